"""Overlapping-window plan for long inputs (tts.tokenizers.windows): every token comes from exactly
one window, far enough from that window's cut edges, and the count is ceil(frames / frames_per_token)."""
from __future__ import annotations

import math

import pytest

from tts.tokenizers.windows import Window, plan_windows

WINDOW, OVERLAP, FPT = 3000, 400, 4  # S3Tokenizer: 30 s of 100 Hz frames, 4 s overlap, 4 frames per token


def test_short_input_is_one_window():
    assert plan_windows(1, WINDOW, OVERLAP, FPT) == [Window(0, 1, 0, 1)]
    assert plan_windows(3000, WINDOW, OVERLAP, FPT) == [Window(0, 3000, 0, 750)]


def test_70s_geometry():
    assert plan_windows(7000, WINDOW, OVERLAP, FPT) == [
        Window(0, 3000, 0, 700), Window(2600, 5600, 50, 700), Window(5200, 7000, 50, 450)]


@pytest.mark.parametrize("num_frames", [3001, 5200, 5201, 5250, 5600, 5601, 8000, 8201, 10400, 36001])
def test_tokens_are_covered_once_away_from_cut_edges(num_frames):
    windows = plan_windows(num_frames, WINDOW, OVERLAP, FPT)
    covered = []
    for k, w in enumerate(windows):
        assert w.end - w.start <= WINDOW and w.start % FPT == 0
        local_tokens = math.ceil((w.end - w.start) / FPT)
        assert 0 <= w.keep_start < w.keep_end <= local_tokens
        if k > 0:  # a cut on the left: keep half the overlap away from it
            assert w.keep_start >= OVERLAP // 2 // FPT
        if k < len(windows) - 1:  # a cut on the right
            assert local_tokens - w.keep_end >= OVERLAP // 2 // FPT
        covered += range(w.start // FPT + w.keep_start, w.start // FPT + w.keep_end)
    assert covered == list(range(math.ceil(num_frames / FPT)))
    assert windows[-1].end == num_frames and (len(windows) == 1 or windows[-2].end < num_frames)


def test_bad_geometry_is_refused():
    with pytest.raises(ValueError):
        plan_windows(100, 3000, 3000, 4)
    with pytest.raises(ValueError):
        plan_windows(100, 3000, 404, 4)
    with pytest.raises(ValueError):
        plan_windows(0, 3000, 400, 4)
