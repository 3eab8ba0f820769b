"""WER/CER: our counts equal jiwer's on fixed strings, normalisation included; corpus rate vs mean of rates."""
from __future__ import annotations

import jiwer
import pytest

from evaluation import wer


@pytest.mark.parametrize("reference, hypothesis, expected", [
    # Whisper's English normaliser: case, punctuation, "Mr." -> "mister", numbers, British spelling map
    ("Mr. Smith paid twenty-one dollars for the colour TV!", "mister smith paid 21 dollars for the color tv",
     (0, 0, 0, 8)),
    ("Hello, world. It's a test.", "hello word it is a test", (1, 0, 0, 6)),
    ("The cat sat on the mat", "the cat sat on mat", (0, 1, 0, 6)),
    ("The cat sat", "uh the cat sat down", (0, 0, 1, 3)),  # "uh" is a filler the normaliser drops
])
def test_whisper_normalised_counts_equal_jiwer(reference, hypothesis, expected):
    normalize = wer.normalizer("whisper", "en", {"colour": "color"})
    errors = wer.count_errors(reference, hypothesis, "en", normalize)
    assert (errors.substitutions, errors.deletions, errors.insertions, errors.reference_units) == expected
    direct = jiwer.process_words(normalize(reference), normalize(hypothesis))
    assert errors.errors == direct.substitutions + direct.deletions + direct.insertions
    assert errors.rate == pytest.approx(direct.wer, abs=1e-12)


def test_seed_tts_eval_normalisation_keeps_apostrophes_and_lowers_case():
    normalize = wer.normalizer("seed-tts-eval", "en")
    assert normalize("It's, the END!") == "it's the end"
    errors = wer.count_errors("It's, the END!", "its the end", "en", normalize)
    assert (errors.substitutions, errors.deletions, errors.insertions) == (1, 0, 0)  # it's != its here
    # Whisper's normaliser spells "it's" as "it is": one more word, so a substitution and a deletion
    whisper = wer.normalizer("whisper", "en")
    assert whisper("It's, the END!") == "it is the end"
    assert wer.count_errors("It's, the END!", "its the end", "en", whisper).errors == 2


def test_chinese_is_scored_in_characters():
    normalize = wer.normalizer("seed-tts-eval", "zh")
    errors = wer.count_errors("今天天气很好。", "今天天汽很好", "zh", normalize)
    assert (errors.substitutions, errors.deletions, errors.insertions, errors.reference_units) == (1, 0, 0, 6)
    assert errors.rate == pytest.approx(jiwer.cer("今天天气很好", "今天天汽很好"))
    basic = wer.normalizer("whisper", "zh")
    assert wer.count_errors("你好，世界！", "你好 世界", "zh", basic).errors == 0


def test_corpus_rate_is_total_errors_over_total_words_not_a_mean_of_rates():
    counted = [wer.count_errors("a b c d e f g h i j", "a b c d e f g h i x"),  # 1 / 10
               wer.count_errors("k l", "x y")]  # 2 / 2
    assert wer.corpus_rate(counted) == pytest.approx(3 / 12)
    assert wer.utterance_mean(counted) == pytest.approx((0.1 + 1.0) / 2)
    direct = jiwer.process_words(["a b c d e f g h i j", "k l"], ["a b c d e f g h i x", "x y"])
    assert wer.corpus_rate(counted) == pytest.approx(direct.wer)


def test_empty_texts():
    assert wer.count_errors("hello there", "").deletions == 2
    nothing = wer.count_errors("", "words")
    assert nothing.rate is None and nothing.insertions == 1
    assert wer.utterance_mean([nothing]) is None and wer.corpus_rate([nothing]) is None
    with pytest.raises(ValueError, match="unknown normalizer"):
        wer.normalizer("nemo", "en")
