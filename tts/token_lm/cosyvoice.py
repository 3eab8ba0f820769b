"""CosyVoice 2's released LLM as a ready stage-1 run: text -> S3 tokens (25 Hz, 6561 codes).

A CosyVoice 2 model folder (``FunAudioLLM/CosyVoice2-0.5B``) holds what is read here::

    cosyvoice2.yaml          the model description (speech_token_size, mix_ratio, sampling settings)
    llm.pt                   the LM's state dict: llm.model.* (a Qwen2ForCausalLM), llm_embedding,
                             speech_embedding, llm_decoder
    CosyVoice-BlankEN/       the Qwen2 folder: config.json and the tokenizer

    run = load_run("pretrained_models/CosyVoice2-0.5B")            # tts.run: a TTSRun of kind token-lm
    model, frontend, info = read_cosyvoice2("pretrained_models/CosyVoice2-0.5B")   # the parts
    tokens = speech_tokens(run, "Hello.", prompt_text=..., prompt_tokens=...)   # tts.token_lm.synthesis

Nothing pickled is executed (``torch.load(weights_only=True)``) and the YAML is read as data: its
``!new:``/``!name:`` tags are never resolved into objects. The text front end is the folder's Qwen2
tokenizer with CosyVoice 2's added special tokens; CosyVoice's text normalisation (wetext /
ttsfrd) is not applied: give normalised text (numbers spelled out). Sampling defaults to
CosyVoice's own (``SamplingSettings(style="cosyvoice")``, top-k 25, top-p 0.8, RAS window 10, 0.1)
and lengths to its rule (2 .. 20 speech tokens per text id).

CosyVoice 3's LLM (``CosyVoice3LM``) is not read: its markers are rows of the speech embedding, its
head has 200 extra ids and no bias, and its text must carry ``<|endofprompt|>`` with an instruction;
see docs/token_lm.md.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
import yaml

from tts.token_lm.backbone import BackboneError, BackboneLMConfig, BackboneTokenizer, BackboneTokenLM, backbone_config
from tts.tokenizers.s3_weights import MODEL_NAME as S3_MODEL

QWEN_FOLDER = "CosyVoice-BlankEN"
WEIGHTS = "llm.pt"
DESCRIPTION = "cosyvoice2.yaml"
TOKEN_RATE = 25.0  # S3Tokenizer v2 tokens per second
# CosyVoice 2's front end adds these to the Qwen2 tokenizer (cosyvoice/tokenizer/tokenizer.py)
SPECIAL_TOKENS = ["<|im_start|>", "<|im_end|>", "<|endofprompt|>", "[breath]", "<strong>", "</strong>", "[noise]",
                  "[laughter]", "[cough]", "[clucking]", "[accent]", "[quick_breath]", "<laughter>", "</laughter>",
                  "[hissing]", "[sigh]", "[vocalized-noise]", "[lipsmack]", "[mn]"]
NEEDED = f"{WEIGHTS}, {DESCRIPTION} and {QWEN_FOLDER}/ (config.json + tokenizer files)"


def is_cosyvoice2(folder: str | Path) -> bool:
    """Whether ``folder`` looks like a CosyVoice 2 model folder (its LLM weights and Qwen2 folder)."""
    folder = Path(folder)
    return (folder / WEIGHTS).is_file() and (folder / QWEN_FOLDER).is_dir()


class _DataLoader(yaml.SafeLoader):
    """YAML as data: HyperPyYAML's tags (``!new:``, ``!name:``, ``!ref``, ``!apply:``) keep their node's value."""


def _untagged(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)


_DataLoader.add_multi_constructor("!", _untagged)
_REF = re.compile(r"^<(\w+)>$")


def read_description(path: Path) -> dict[str, Any]:
    """What the LM needs from ``cosyvoice2.yaml``: codebook size, mix ratio, sampling settings."""
    try:
        data = yaml.load(path.read_text(), Loader=_DataLoader)
    except (OSError, yaml.YAMLError) as e:
        raise BackboneError(f"{path}: cannot read the model description ({str(e).splitlines()[0]})") from None
    llm = data.get("llm") if isinstance(data, dict) else None
    if not isinstance(llm, dict) or "speech_token_size" not in llm:
        raise BackboneError(f"{path}: no llm section with speech_token_size (is this CosyVoice 2's yaml?)")

    def value(v):
        match = _REF.match(v) if isinstance(v, str) else None
        return data.get(match.group(1)) if match else v

    sampling = llm.get("sampling") if isinstance(llm.get("sampling"), dict) else {}
    mix = [int(value(v)) for v in llm.get("mix_ratio", [5, 15])]
    return {"codebook_size": int(value(llm["speech_token_size"])), "mix_ratio": mix,
            "top_k": int(value(sampling.get("top_k", 25))), "top_p": float(value(sampling.get("top_p", 0.8))),
            "win_size": int(value(sampling.get("win_size", 10))), "tau_r": float(value(sampling.get("tau_r", 0.1))),
            "token_rate": float(value(data.get("token_frame_rate", TOKEN_RATE)))}


def convert_state_dict(state: dict[str, torch.Tensor], source: str | Path) -> dict[str, torch.Tensor]:
    """CosyVoice 2's ``Qwen2LM`` keys -> :class:`BackboneTokenLM` keys (the Qwen2 text head is dropped:
    the speech head ``llm_decoder`` replaces it)."""
    out = {}
    for key, value in state.items():
        if key.startswith("llm.model.model."):
            out["llm." + key[len("llm.model.model."):]] = value
        elif key.startswith("llm.model.lm_head."):
            continue
        elif key.split(".")[0] in ("llm_embedding", "speech_embedding", "llm_decoder"):
            out[key] = value
        else:
            raise BackboneError(f"{source}: unexpected key {key!r} (not CosyVoice 2's Qwen2LM layout)")
    return out


def read_cosyvoice2(folder: str | Path, device: str | torch.device = "cpu"
                    ) -> tuple[BackboneTokenLM, BackboneTokenizer, dict[str, Any]]:
    """A CosyVoice 2 model folder -> (the LM in eval mode, its text front end, the run's ``latent.json``
    fields: token rate, codebook, tokenizer, length rule, sampling). Raises :class:`BackboneError` (one line)."""
    folder = Path(folder)
    missing = [name for name in (WEIGHTS, DESCRIPTION, QWEN_FOLDER) if not (folder / name).exists()]
    if missing:
        raise BackboneError(f"{folder}: not a CosyVoice 2 model folder (missing {', '.join(missing)}; it needs {NEEDED})")
    info = read_description(folder / DESCRIPTION)
    qwen = folder / QWEN_FOLDER
    text_vocab = backbone_config(qwen).vocab_size
    cfg = BackboneLMConfig(backbone=QWEN_FOLDER, text_vocab=text_vocab, codebook_size=info["codebook_size"],
                           bistream=True, text_chunk=info["mix_ratio"][0], speech_chunk=info["mix_ratio"][1])
    frontend = BackboneTokenizer.load(qwen, text_vocab, SPECIAL_TOKENS)
    model = BackboneTokenLM(cfg, root=folder)
    try:
        state = torch.load(folder / WEIGHTS, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file gets one line
        raise BackboneError(f"{folder / WEIGHTS}: cannot load ({str(e).splitlines()[0]})") from None
    try:
        result = model.load_state_dict(convert_state_dict(state, folder / WEIGHTS), strict=False)
    except RuntimeError as e:
        raise BackboneError(f"{folder / WEIGHTS}: {str(e).splitlines()[0]}") from None
    if result.missing_keys or result.unexpected_keys:
        names = (result.missing_keys or result.unexpected_keys)[:3]
        raise BackboneError(f"{folder / WEIGHTS}: {'missing' if result.missing_keys else 'unexpected'} weights "
                       f"{', '.join(names)} (not CosyVoice 2's LLM for this {QWEN_FOLDER} config)")
    latent_info = {"token_rate": info["token_rate"], "codebook_size": info["codebook_size"],
                   "tokenizer": f"s3tokenizer:{S3_MODEL}", "min_len_ratio": 2.0, "max_len_ratio": 20.0,
                   "sampling": {"top_k": info["top_k"], "top_p": info["top_p"], "ras_window": info["win_size"],
                                "ras_ratio": info["tau_r"], "style": "cosyvoice"}}
    return model.to(device).eval(), frontend, latent_info

