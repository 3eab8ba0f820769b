"""The GPU check: every CUDA path of the toolkit, in one command, in stages with a time budget each.

    python benchmarks/gpu_check.py --device cpu --quick --out /tmp/gpu_check    # here: the plumbing, tiny sizes
    python benchmarks/gpu_check.py --prepare .gpu                              # here: what the GPU machine lacks
    python benchmarks/gpu_check.py --device cuda --out "$OUT" --carried .gpu   # there: 8 minutes at most

Stages (each in a process of its own, stopped at its budget; one that fails or runs out is reported and
the next one runs):

1. ``tests``: the suite's ``device`` subset (``pytest -m device`` with ``DCAE_TEST_DEVICE``): inference
   parity with the reference, chunked and streamed decoding, export, a DC-AE training run, the one-stage,
   token-flow and token-LM models trained and synthesized on the device. Its summary line is kept.
2. ``numerics``: the default DC-AE and BigVGAN-v2 22 kHz (random weights, official layouts): bf16 and
   fp16 against fp32 on the device for encode, decode and the whole pipeline, and the device's fp32
   (torch's default TF32 settings) against the CPU's.
3. ``export``: ``dcae export`` of real speech as a whole job (bf16 where native, and fp32) against a
   loop over the reference (diffusers ``AutoencoderDC``, one file at a time, fp32); the encoder's own
   throughput in bf16 as a fraction of the device's compute limit (FLOPs counted by torch's
   ``FlopCounterMode``, the limit measured as a large bf16 matrix product in the same run).
4. ``reconstruct``: audio -> latent -> audio (10 s) in fp32 / bf16 / fp16, with the DC-AE under
   ``torch.compile`` too, against the reference pipeline in fp32.
5. ``train``: one DC-AE training step at the default config and the reference's batch (4 x 245760
   samples): ours in fp32, bf16 and bf16 + ``torch.compile`` against the reference trainer's own step in
   fp32 (its discriminator, losses and Muon, from ``DCAE_REFERENCE_REPO``; skipped with the reason
   without it).
6. ``tts``: token LM and token-flow (base presets): LM tokens/s, time to the first latent chunk and to
   the first audio of the two-stage stream.
7. ``kernel``: BigVGAN's fused CUDA activation kernel (the wheel builds it with ``nvcc`` and ``ninja``)
   against its PyTorch path: time and error. CUDA only.
8. ``nccl``: two processes of ``train.py`` under ``torchrun`` with NCCL, when the machine has two GPUs.

Everything goes under ``--out``: ``<stage>.log`` (the stage's output), ``results.json`` (every figure)
and ``summary.md`` (the table printed last). ``--quick`` uses tiny sizes: it checks that every stage
runs (the slow test ``tests/test_gpu_check.py`` runs it on the CPU), not the figures.

The GPU machine has PyTorch but none of the audio packages and no network. ``--prepare DIR`` (here, with
the registries) writes what a run there needs into ``DIR``: ``wheels/`` (the packages the H200 image
lacks, for its Python 3.12), ``speech/`` (48 clips of the suite's speech, ``tests/data/get_speech.py``)
and ``reference/`` (the reference repository's trainer files, from ``DCAE_REFERENCE_REPO`` when set).
``--carried DIR`` there installs the wheels into a temporary folder and uses the rest.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.common import machine, timeit  # noqa: E402
from dcae.precision import fast_matmul_dtype, native_bf16  # noqa: E402

STAGES = ("tests", "numerics", "export", "reconstruct", "train", "tts", "kernel", "nccl")
BUDGET_S = {"tests": 100, "numerics": 40, "export": 60, "reconstruct": 75, "train": 70, "tts": 35, "kernel": 75,
            "nccl": 25}  # on a GPU: 480 s at most (the device tool allows 600 s a command)
QUICK_BUDGET_S = 600  # each stage, on a CPU with tiny sizes
# The packages the H200 image lacks (the device tool's KINDS.md lists what it has), with the versions
# this project is tested with. pesq has no wheel on PyPI: --prepare builds one with Python 3.12.
CARRIED = ("soundfile==0.14.0 cffi==2.1.1 pycparser==3.12 bigvgan==2.4.1 auraloss==0.4.0 librosa==0.11.0 "
           "audioread==3.1.0 decorator==5.3.1 pooch==1.9.0 platformdirs==4.14.9 soxr==1.1.0 nnaudio==0.3.4 "
           "pystoi==0.4.1 diffusers==0.42.1 importlib-metadata==10.2.0 lazy-importer==0.1.0 "
           "vector-quantize-pytorch==1.32.0 einx==0.4.3 frozendict==2.5.1 loguru==0.7.3 "
           "torch-einops-utils==0.2.0").split()
REFERENCE_FILES = ("models/discriminator.py", "utils/muon.py")
SPEECH_CLIPS = 40  # English prompts, besides the 8 alsa clips


# ------------------------------------------------------------------ helpers (stage processes)
def _save(out: Path, stage: str, figures: dict) -> None:
    """Write the figures so far (a stage stopped at its budget keeps what it measured)."""
    (out / f"{stage}.json").write_text(json.dumps(figures, indent=2))


def _rel(a, b) -> float:
    """Relative L2 error of ``a`` against ``b`` (both moved to the CPU, fp32)."""
    a, b = a.detach().float().cpu(), b.detach().float().cpu()
    n = min(a.shape[-1], b.shape[-1])
    a, b = a[..., :n], b[..., :n]
    return ((a - b).norm() / b.norm()).item()


def _precisions(device) -> list[str]:
    return ["fp32"] + (["bf16"] if native_bf16(device) else []) + (["fp16"] if device.type == "cuda" else [])


def _models(root: Path, quick: bool) -> tuple[str, Path, Path]:
    """(DC-AE config, generator checkpoint, vocoder folder) of random weights (seed 0) in the official
    layouts: the default DC-AE and BigVGAN-v2 22 kHz, or (quick) the tiny DC-AE and a 64-channel BigVGAN."""
    from dcae import DCAEWrapper, save_generator
    from vocoder.bigvgan_loader import build_generator, save_vocoder_folder
    from vocoder.mel import load_bigvgan_config

    config = str(REPO / "dcae" / "configs" / ("tiny.json" if quick else "default.json"))
    torch.manual_seed(0)
    save_generator(DCAEWrapper(config), root / "generator.pt")
    h = dict(load_bigvgan_config(), **({"upsample_initial_channel": 64} if quick else {}))
    save_vocoder_folder(root / "vocoder", build_generator(h), h)
    return config, root / "generator.pt", root / "vocoder"


def _speech(seconds: float):
    from benchmarks.common import speech_seconds

    return torch.from_numpy(speech_seconds(seconds, 22050))


# ------------------------------------------------------------------ stages
def stage_tests(device, quick: bool, out: Path) -> dict:
    env = dict(os.environ, DCAE_TEST_DEVICE=str(device), PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "device", "-p", "no:cacheprovider", "-o", "addopts=-ra"]
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    (out / "tests_pytest.log").write_text(result.stdout + result.stderr)
    lines = [ln for ln in result.stdout.splitlines() if ln.strip()]
    summary = next((ln.strip("= ") for ln in reversed(lines) if " in " in ln and ("passed" in ln or "failed" in ln
                                                                                  or "error" in ln)), "no summary")
    print(f"pytest -m device on {device}: {summary}")
    failures = [ln for ln in lines if ln.startswith(("FAILED", "ERROR"))]
    for line in failures:
        print(line)
    return {"summary": summary, "exit_code": result.returncode, "failures": failures}


def stage_numerics(device, quick: bool, out: Path) -> dict:
    from dcae.pipeline import DCAEInferenceWrapper

    audio = _speech(3.0 if quick else 5.0)  # the CPU's own fp32 run of the full models is in the budget
    figures = {}
    with tempfile.TemporaryDirectory() as tmp:
        config, generator, vocoder = _models(Path(tmp), quick)
        cpu = DCAEInferenceWrapper(generator, config, vocoder, device="cpu")
        wrappers = {p: DCAEInferenceWrapper(generator, config, vocoder, precision=p, device=device)
                    for p in _precisions(device)}
    with torch.inference_mode():
        z_cpu, y_cpu = cpu.encode(audio, 22050), cpu(audio, 22050)
        fp32 = wrappers["fp32"]
        z32 = fp32.encode(audio, 22050)
        mel32, y32 = fp32.decode_mel(z32), fp32(audio, 22050)
        if device.type != "cpu":
            figures["fp32 device vs CPU"] = {"encode": _rel(z32, z_cpu), "pipeline": _rel(y32, y_cpu)}
        for p, w in wrappers.items():
            if p != "fp32":
                figures[f"{p} vs fp32"] = {"encode": _rel(w.encode(audio, 22050), z32),
                                           "decode": _rel(w.decode_mel(z32), mel32),
                                           "pipeline": _rel(w(audio, 22050), y32)}
    print(f"relative L2 errors, {audio.shape[0] / 22050:.0f} s of speech, {Path(config).name}, random weights:")
    for name, errors in figures.items():
        print(f"  {name}: " + ", ".join(f"{k} {v:.1e}" for k, v in errors.items()))
    return figures


def _matmul_peak(device, quick: bool) -> float:
    """Measured bf16 (CPU without native bf16: fp32) matrix-product rate in FLOP/s: the compute limit."""
    n = 1024 if quick else 8192
    dtype = torch.bfloat16 if native_bf16(device) else torch.float32
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    return 2 * n**3 / timeit(lambda: a @ b, repeats=5, warmup=2)


def stage_export(device, quick: bool, out: Path) -> dict:
    import numpy as np
    import soundfile as sf
    from torch.utils.flop_counter import FlopCounterMode

    from benchmarks.export_speed import reference_loop
    from dcae import load_dcae
    from dcae.latent_export import run_export
    from vocoder.mel import MelSpectrogram, load_bigvgan_config

    files_n, ref_n = (6, 6) if quick else (400, 40)
    figures = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        config, generator, _ = _models(root, quick)
        speech = _speech(60.0).numpy()
        rng = np.random.default_rng(0)
        files = []
        for i in range(files_n):  # 1.5-6.5 s utterances cut from real speech, at 22050 Hz (no resampling timed)
            n = int(rng.uniform(1.5, 6.5) * 22050)
            start = int(rng.integers(0, len(speech) - n))
            files.append(root / f"u{i:04d}.wav")
            sf.write(files[-1], speech[start:start + n], 22050)
        seconds = sum(sf.info(f).duration for f in files)
        filelist = root / "filelist.txt"
        filelist.write_text("".join(f"{f}\n" for f in files))
        ref_s = reference_loop(json.loads(Path(config).read_text()), generator, files[:ref_n], load_bigvgan_config(),
                               device)
        ref_speed = sum(sf.info(f).duration for f in files[:ref_n]) / ref_s
        figures["reference loop fp32"] = {"x_real_time": ref_speed}
        _save(out, "export", figures)
        print(f"{files_n} files, {seconds:.0f} s of speech; {Path(config).name}")
        print(f"  reference loop fp32 ({ref_n} files): {ref_speed:8.1f}x real time")
        for precision in [p for p in _precisions(device) if p != "fp16"][::-1]:
            start = time.perf_counter()
            run_export(filelist, root / f"out_{precision}", generator, Path(config), None, str(device), precision,
                       "float32", batch_size=32, max_batch_seconds=640, num_workers=None, poll_seconds=0.1)
            speed = seconds / (time.perf_counter() - start)
            figures[f"dcae export {precision}"] = {"x_real_time": speed, "vs_reference": speed / ref_speed}
            _save(out, "export", figures)
            print(f"  dcae export {precision:4s} (whole job): {speed:8.1f}x real time, {speed / ref_speed:.1f}x the "
                  "reference loop")
        # the encoder alone, batches of 10 s: FLOPs per audio-second and the share of the compute limit
        precision = "bf16" if "bf16" in _precisions(device) else "fp32"
        model = load_dcae(generator, config, device, precision)
        mel_fn = MelSpectrogram().to(device)
        batch = 4 if quick else 32
        mel = mel_fn(torch.from_numpy(speech[: 10 * 22050 // 4096 * 4096]).to(device).expand(batch, -1))
        with torch.inference_mode():
            with FlopCounterMode(display=False) as counter:
                model.encode(mel.to(next(model.parameters()).dtype))
            flops = counter.get_total_flops()
            t = timeit(lambda: model.encode(mel.to(next(model.parameters()).dtype)))
        peak = _matmul_peak(device, quick)
        audio_s = batch * mel.shape[-1] * 256 / 22050
        figures[f"encoder alone {precision}"] = {"x_real_time": audio_s / t, "gflop_per_audio_s": flops / audio_s / 1e9,
                                                 "tflops": flops / t / 1e12, "peak_tflops": peak / 1e12,
                                                 "fraction_of_peak": flops / t / peak}
        print(f"  encoder alone {precision} (batch {batch} x 10 s, mel given): {audio_s / t:8.1f}x real time, "
              f"{flops / audio_s / 1e9:.3g} GFLOP per audio-second, {flops / t / 1e12:.2f} TFLOP/s = "
              f"{flops / t / peak:.1%} of the measured matrix-product rate ({peak / 1e12:.1f} TFLOP/s)")
    return figures


def stage_reconstruct(device, quick: bool, out: Path) -> dict:
    from dcae.pipeline import DCAEInferenceWrapper
    from tests.dcae.test_pipeline import reference_models, reference_pipeline

    audio = _speech(3.0 if quick else 10.0)
    duration = audio.shape[0] / 22050
    figures = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        config, generator, vocoder = _models(root, quick)
        ae, norm, voc, h = reference_models(root, config)
        ae, norm, voc = ae.to(device), norm.to(device), voc.to(device)
        wrappers = {p: DCAEInferenceWrapper(generator, config, vocoder, precision=p, device=device)
                    for p in _precisions(device)}
    ref_s = timeit(lambda: reference_pipeline(root, config, audio.to(device), (ae, norm, voc, h)), repeats=2)
    expected = reference_pipeline(root, config, audio.to(device), (ae, norm, voc, h))[0][..., : audio.shape[0]]
    figures["reference fp32"] = {"seconds": ref_s, "x_real_time": duration / ref_s}
    _save(out, "reconstruct", figures)
    print(f"{duration:.0f} s of speech, {Path(config).name}, BigVGAN-v2 22 kHz structure, random weights")
    print(f"  {'reference fp32':26s} {duration / ref_s:8.1f}x real time")
    runs = [(p, w, False) for p, w in wrappers.items()] + [(p, w, True) for p, w in wrappers.items() if p != "fp32"]
    for precision, w, compiled in runs:
        if compiled:  # the DC-AE's encode and decode under torch.compile (BigVGAN runs stage by stage)
            import torch._dynamo as dynamo

            dynamo.reset()
            w.ae_model.encode = torch.compile(w.ae_model.encode)
            w.ae_model.decode = torch.compile(w.ae_model.decode)
        name = f"ours {precision}" + (" + compile" if compiled else "")
        try:
            with torch.inference_mode():
                seconds = timeit(lambda: w(audio, 22050), repeats=2)
                error = _rel(w(audio, 22050), expected)
        except Exception as e:  # noqa: BLE001 - reported, the next configuration runs
            figures[name] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
            print(f"  {name:26s} failed: {figures[name]['error']}")
            continue
        figures[name] = {"seconds": seconds, "x_real_time": duration / seconds, "vs_reference": ref_s / seconds,
                         "rel_error_vs_reference": error}
        _save(out, "reconstruct", figures)
        print(f"  {name:26s} {duration / seconds:8.1f}x real time, {ref_s / seconds:5.2f}x the reference, "
              f"relative L2 error {error:.1e}")
    return figures


def stage_train(device, quick: bool, out: Path) -> dict:
    import statistics

    from benchmarks.train_speed import our_step_fn, reference_step_fn, time_steps
    from dcae import DCAEWrapper
    from dcae.model import trainer as train
    from tests.reference_repo import reference_available
    from vocoder.mel import MelSpectrogram

    config = str(REPO / "dcae" / "configs" / ("tiny.json" if quick else "default.json"))
    batch, samples, steps = (2, 16384, 2) if quick else (4, 245760, 5)
    mel = MelSpectrogram().to(device)(0.1 * torch.randn(batch, samples, device=device))
    variants = [("ours fp32", "fp32", False), ("ours bf16", "bf16", False), ("ours bf16 + compile", "bf16", True)]
    if "bf16" not in _precisions(device):
        variants = [("ours fp32", "fp32", False), ("ours fp32 + compile", "fp32", True)]
    figures = {}
    print(f"DC-AE training step, {Path(config).name}, batch {batch} x {samples} samples, median of {steps}")
    audio_s = batch * samples / 22050
    if reference_available():
        cfg = train.TrainConfig(model_config_path=config, batch_size=batch, segment_samples=samples,
                                precision="fp32", device=str(device))
        torch.manual_seed(0)
        modules = Path(tempfile.mkdtemp(prefix="gpu_check_reference_"))  # the reference's files, imported from here
        step = reference_step_fn(cfg, DCAEWrapper(config).to(device).train(), device, modules)
        time_steps(step, mel, 1, device)
        ref = statistics.median(time_steps(step, mel, steps, device))
        shutil.rmtree(modules, ignore_errors=True)
        figures["reference fp32"] = {"ms_per_step": ref * 1000, "audio_s_per_s": audio_s / ref}
        _save(out, "train", figures)
        print(f"  {'reference fp32':22s} {ref * 1000:8.0f} ms/step")
        del step
    else:
        ref = None
        print("  reference: skipped (DCAE_REFERENCE_REPO is not set: the reference trainer's discriminator and Muon)")
    for name, precision, compiled in variants:
        cfg = train.TrainConfig(model_config_path=config, batch_size=batch, segment_samples=samples,
                                precision=precision, device=str(device), compile=compiled)
        try:
            step = our_step_fn(cfg, device, fast_matmul_dtype(device))
            time_steps(step, mel, 2 if compiled else 1, device)  # compiling happens in the first steps
            t = statistics.median(time_steps(step, mel, steps, device))
        except Exception as e:  # noqa: BLE001 - reported, the next configuration runs
            figures[name] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
            print(f"  {name:22s} failed: {figures[name]['error']}")
            continue
        figures[name] = {"ms_per_step": t * 1000, "audio_s_per_s": audio_s / t}
        if ref is not None:
            figures[name]["vs_reference"] = ref / t
        _save(out, "train", figures)
        print(f"  {name:22s} {t * 1000:8.0f} ms/step" + (f"  {ref / t:.2f}x the reference" if ref else ""))
        del step
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return figures


def stage_tts(device, quick: bool, out: Path) -> dict:
    from benchmarks.token_flow_latency import TOKEN_RATE, token_flow_run
    from benchmarks.two_stage_latency import TEXT, measure, speech_token_source, token_lm_run
    from dcae.pipeline import DCAEInferenceWrapper
    from tts.text import TextFrontend
    from tts.two_stage import speak, speak_latents

    preset, seconds = ("tiny", 2.0) if quick else ("base", 6.0)
    text = TEXT[: round(seconds * 10)]
    frontend = TextFrontend.fit([text], "chars")
    ids = len(frontend.encode(text))
    with tempfile.TemporaryDirectory() as tmp:
        config, generator, vocoder = _models(Path(tmp), quick)
        wrapper = DCAEInferenceWrapper(generator, config, vocoder, device=device)
    torch.manual_seed(0)
    lm = token_lm_run(preset, frontend, seconds * TOKEN_RATE / ids)
    flow = token_flow_run(preset, wrapper.frame_rate, wrapper.latent_dim)
    lm.model.to(device)
    flow.model.to(device)
    options = dict(chunk_frames=2, steps=10, cfg_scale=1.5)
    figures = {}
    with torch.inference_mode():
        written: list[int] = []
        measure((torch.zeros(1) for _ in speech_token_source(lm, text[:10], on=written, seed=0)), written, TOKEN_RATE)
        written = []
        alone = measure((torch.zeros(1) for _ in speech_token_source(lm, text, on=written, seed=0)), written,
                        TOKEN_RATE)
        written = []
        latents = measure(speak_latents(lm, flow, text, flow_options=options, on_token=written.append, seed=0),
                          written, wrapper.frame_rate)
        written = []
        audio = measure(speak(lm, flow, wrapper, text, flow_options=options, on_token=written.append, seed=0),
                        written, wrapper.sample_rate)
    figures = {"preset": preset, "lm_tokens_per_s": TOKEN_RATE / alone["rtf"], "lm_first_token_s": alone["first_s"],
               "first_latent_chunk_s": latents["first_s"], "latent_rtf": latents["rtf"],
               "first_audio_s": audio["first_s"], "audio_rtf": audio["rtf"], "tokens": audio["tokens"]}
    print(f"two-stage stream, {preset} token LM + token-flow, {audio['tokens']} tokens ({seconds:g} s), random weights")
    print(f"  LM alone: first token {alone['first_s']:.3f} s, {TOKEN_RATE / alone['rtf']:.0f} tokens/s; first latent "
          f"chunk {latents['first_s']:.3f} s; first audio {audio['first_s']:.3f} s; audio stream RTF {audio['rtf']:.3f}")
    return figures


def stage_kernel(device, quick: bool, out: Path) -> dict:
    from vocoder.bigvgan_loader import load_vocoder

    if device.type != "cuda":
        print("skipped: BigVGAN's fused activation kernel is CUDA only")
        return {"skipped": "not a CUDA device"}
    with tempfile.TemporaryDirectory() as tmp:
        _, _, vocoder = _models(Path(tmp), quick)
        plain = load_vocoder(vocoder, device, "fp32")
        start = time.perf_counter()
        fused = load_vocoder(vocoder, device, "fp32", use_cuda_kernel=True)
        mel = torch.randn(1, 80, 862, device=device) * 2 - 5  # 10 s
        with torch.inference_mode():
            expected = plain.generator(mel)
            got = fused.generator(mel)  # the first call builds the extension
            build_s = time.perf_counter() - start
            t_plain = timeit(lambda: plain.generator(mel))
            t_fused = timeit(lambda: fused.generator(mel))
    figures = {"build_and_first_call_s": build_s, "plain_ms": t_plain * 1000, "fused_ms": t_fused * 1000,
               "speedup": t_plain / t_fused, "rel_error": _rel(got, expected)}
    print(f"BigVGAN 10 s of mel, fp32: PyTorch activations {t_plain * 1000:.0f} ms, fused CUDA kernel "
          f"{t_fused * 1000:.0f} ms ({t_plain / t_fused:.2f}x), relative L2 error {figures['rel_error']:.1e}; "
          f"kernel built and first call in {build_s:.0f} s")
    return figures


def stage_nccl(device, quick: bool, out: Path) -> dict:
    if device.type != "cuda" or torch.cuda.device_count() < 2:
        reason = "not a CUDA device" if device.type != "cuda" else f"{torch.cuda.device_count()} GPU on this machine"
        print(f"skipped: {reason} (two are needed)")
        return {"skipped": reason}
    import soundfile as sf

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        speech = _speech(20.0).numpy()
        files = []
        for i in range(8):
            files.append(root / f"c{i}.wav")
            sf.write(files[-1], speech[i * 50000: i * 50000 + 50000], 22050)
        (root / "train.txt").write_text("".join(f"{f}\n" for f in files))
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               str(REPO / "train.py"), "--train-dataset-path", str(root / "train.txt"), "--model-config-path", "tiny",
               "--segment-samples", "16384", "--batch-size", "2", "--num-workers", "0", "--max-steps", "4",
               "--save-interval", "4", "--log-interval", "1", "--device", "cuda",
               "--model-save-path", str(root / "ckpt"), "--log-dir", str(root / "runs")]
        start = time.perf_counter()
        result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        ok = result.returncode == 0 and (root / "ckpt" / "state_4.pt").is_file()
    print(result.stdout[-2000:] + result.stderr[-2000:])
    print(f"torchrun 2 x NCCL, 4 steps: {'ok' if ok else 'FAILED'} in {seconds:.0f} s")
    return {"ok": ok, "seconds": seconds, "exit_code": result.returncode}


# ------------------------------------------------------------------ the driver
def run_stage(name: str, args) -> int:
    """In the stage's own process: run it, write ``<stage>.json``."""
    out = Path(args.out)
    device = torch.device(args.device)

    print(f"== {name} on {device}; {machine()}", flush=True)
    _save(out, name, globals()[f"stage_{name}"](device, args.quick, out))
    return 0


def describe(name: str, figures: dict) -> str:
    """One line of the summary table for a stage's figures."""
    if "skipped" in figures:
        return f"skipped: {figures['skipped']}"
    if name == "tests":
        return figures["summary"]
    if name == "numerics":
        return "; ".join(f"{k}: pipeline {v['pipeline']:.1e}" for k, v in figures.items())
    if name in ("export", "reconstruct", "train"):
        parts = []
        for k, v in figures.items():
            if "error" in v:
                parts.append(f"{k}: failed")
            elif name == "train":
                parts.append(f"{k} {v['ms_per_step']:.0f} ms" + (f" ({v['vs_reference']:.2f}x)" if "vs_reference" in v
                                                                  else ""))
            else:
                parts.append(f"{k} {v['x_real_time']:.0f}x RT" + (f" ({v['vs_reference']:.2f}x ref)"
                                                                   if "vs_reference" in v else ""))
        if name == "export":
            enc = next((v for k, v in figures.items() if k.startswith("encoder alone")), None)
            if enc:
                parts.append(f"encoder {enc['fraction_of_peak']:.0%} of the matmul rate")
        return "; ".join(parts)
    if name == "tts":
        return (f"{figures['preset']}: LM {figures['lm_tokens_per_s']:.0f} tokens/s, first audio "
                f"{figures['first_audio_s']:.2f} s, RTF {figures['audio_rtf']:.2f}")
    if name == "kernel":
        return f"{figures['speedup']:.2f}x the PyTorch activations, error {figures['rel_error']:.1e}"
    if name == "nccl":
        return f"{'ok' if figures['ok'] else 'FAILED'} in {figures['seconds']:.0f} s"
    return json.dumps(figures)[:200]


def carried_environment(folder: Path) -> dict:
    """Install ``folder/wheels`` into a temporary site folder; the environment for the stage processes."""
    env = dict(os.environ)
    wheels = sorted((folder / "wheels").glob("*.whl"))
    if wheels:
        site = Path(tempfile.mkdtemp(prefix="gpu_check_site_"))
        result = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                                 "--no-cache-dir", "--target", str(site), *map(str, wheels)], capture_output=True, text=True)
        if result.returncode != 0:
            errors = [ln for ln in result.stderr.splitlines() if ln.startswith("ERROR")] or result.stderr.splitlines()[-1:]
            sys.exit(f"error: {folder / 'wheels'}: pip could not install the carried wheels here: "
                     f"{errors[0] if errors else 'exit code ' + str(result.returncode)}")
        env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    speech = folder / "speech"
    if speech.is_dir():  # its filelist names the clips where they are now
        clips = sorted(p.resolve() for p in speech.rglob("*.wav"))
        (speech / "filelist.txt").write_text("".join(f"{p}\n" for p in clips))
        env["DCAE_SPEECH_DIR"] = str(speech.resolve())
    if (folder / "reference").is_dir():
        env["DCAE_REFERENCE_REPO"] = str((folder / "reference").resolve())
    return env


def prepare(folder: Path) -> int:
    """Write what a run on the GPU machine needs into ``folder`` (here, with the package registries)."""
    from tests.data.get_speech import default_dest, is_ready

    folder.mkdir(parents=True, exist_ok=True)
    wheels = folder / "wheels"
    wheels.mkdir(exist_ok=True)
    platforms = [f"--platform={p}" for p in ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
                                             "manylinux2014_x86_64", "manylinux1_x86_64")]
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "--python-version", "3.12", "--implementation", "cp", *platforms, "-d", str(wheels), *CARRIED],
                   check=True)
    if not list(wheels.glob("pesq-*.whl")):  # sdist only on PyPI: built with a Python 3.12 of this machine
        candidates = [shutil.which("python3.12"), *sorted(Path.home().glob(".pyenv/versions/3.12*/bin/python3"))]
        python312 = next((c for c in candidates if c and subprocess.run(
            [str(c), "-c", "import sys; assert sys.version_info[:2] == (3, 12)"], capture_output=True).returncode == 0),
            None)
        if python312 is None:
            print("warning: no python3.12 here to build pesq's wheel; the stages that score PESQ will fail there")
        else:
            subprocess.run([str(python312), "-m", "pip", "wheel", "-q", "--no-deps", "pesq==0.0.4", "-w", str(wheels)],
                           check=True)
    source = default_dest()
    if not is_ready(source):
        subprocess.run([sys.executable, str(REPO / "tests" / "data" / "get_speech.py")], check=True)
    speech = folder / "speech"
    for sub in ("en", "alsa"):
        (speech / sub).mkdir(parents=True, exist_ok=True)
    clips = sorted((source / "alsa").glob("*.wav")) + sorted((source / "en").glob("*.wav"))[:SPEECH_CLIPS]
    for clip in clips:
        shutil.copy2(clip, speech / clip.parent.name / clip.name)
    from tests.reference_repo import reference_available, reference_source

    reference = reference_available()
    if reference:  # the files the training-step comparison imports, as a plain folder
        for rel in REFERENCE_FILES:
            (folder / "reference" / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / "reference" / rel).write_text(reference_source(rel))
    else:
        print("note: DCAE_REFERENCE_REPO is not set: the training-step ratio will be skipped there")
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    print(f"{folder}: {len(list(wheels.glob('*.whl')))} wheels, {len(clips)} speech clips, "
          f"{'reference files' if reference else 'no reference'}; {size / 2**20:.1f} MiB (carry it: the device "
          "tool takes 64 MiB with the working tree)")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n".join(__doc__.splitlines()[1:5]))
    p.add_argument("--device", default="cuda", help="cuda (the check) or cpu (with --quick: the plumbing)")
    p.add_argument("--out", type=Path, help="folder for the logs, results.json and summary.md")
    p.add_argument("--quick", action="store_true", help="tiny sizes: every stage runs, the figures mean nothing")
    p.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated, of {','.join(STAGES)}")
    p.add_argument("--carried", type=Path, help="a folder written by --prepare: wheels, speech, reference files")
    p.add_argument("--prepare", type=Path, metavar="DIR", help="write what the GPU machine lacks into DIR, then exit")
    p.add_argument("--stage", choices=STAGES, help=argparse.SUPPRESS)  # one stage, in its own process
    args = p.parse_args(argv)
    if args.prepare:
        return prepare(args.prepare)
    if args.out is None:
        p.error("--out is required")
    stages = [s for s in args.stages.split(",") if s]
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        p.error(f"unknown stage(s) {', '.join(unknown)}; the stages are {', '.join(STAGES)}")
    args.out.mkdir(parents=True, exist_ok=True)
    if args.stage:
        return run_stage(args.stage, args)
    env = carried_environment(args.carried) if args.carried else dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    probe = subprocess.run([sys.executable, "-c", f"import torch; torch.device({args.device!r}); "
                            "import bigvgan, soundfile, diffusers, safetensors, click; "
                            f"assert {args.device!r} == 'cpu' or torch.cuda.is_available(), 'torch sees no GPU'"],
                           env=env, capture_output=True, text=True)
    if probe.returncode != 0:
        print(f"error: this environment cannot run the check: {probe.stderr.strip().splitlines()[-1]}")
        return 2
    results, started = {}, time.perf_counter()
    for name in stages:
        budget = QUICK_BUDGET_S if args.quick else BUDGET_S[name]
        cmd = [sys.executable, str(Path(__file__).resolve()), "--stage", name, "--device", args.device,
               "--out", str(args.out)] + (["--quick"] if args.quick else [])
        (args.out / f"{name}.json").unlink(missing_ok=True)
        t0 = time.perf_counter()
        with open(args.out / f"{name}.log", "w") as log:
            try:
                code = subprocess.run(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                      timeout=budget).returncode
                status = "ok" if code == 0 else f"failed (exit {code})"
            except subprocess.TimeoutExpired:
                status = f"out of time ({budget} s)"
        seconds = time.perf_counter() - t0
        figures_file = args.out / f"{name}.json"
        figures = json.loads(figures_file.read_text()) if figures_file.is_file() else {}
        if status == "ok" and name == "tests" and figures.get("exit_code"):
            status = "failed tests"
        results[name] = {"status": status, "seconds": round(seconds, 1), "figures": figures}
        print(f"[{time.perf_counter() - started:5.0f} s] {name}: {status} in {seconds:.0f} s", flush=True)
        print((args.out / f"{name}.log").read_text().rstrip(), flush=True)

    (args.out / "results.json").write_text(json.dumps({"machine": machine(), "device": args.device,
                                                       "quick": args.quick, "stages": results}, indent=2))
    table = ["| stage | status | seconds | figures |", "| --- | --- | --- | --- |"]
    for name, r in results.items():
        text = describe(name, r["figures"]) if r["figures"] else "-"
        table.append(f"| {name} | {r['status']} | {r['seconds']:.0f} | {text} |")
    summary = f"{machine()}\n\n" + "\n".join(table) + "\n"
    (args.out / "summary.md").write_text(summary)
    print("\n" + summary)
    return 0 if all(r["status"] == "ok" for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
