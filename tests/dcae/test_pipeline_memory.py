"""Bounded memory: long audio is encoded in memory-sized windows, so the extra memory is small and
does not grow with length.

Each measurement runs in a fresh process: the model is loaded, the peak resident set size (VmHWM)
is reset to the current one (``/proc/self/clear_refs``), the audio is encoded, and the extra memory
is the new peak minus the resident size before encoding (the windows' activations, the padded
signal, the latent).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import DEFAULT_CONFIG, REPO

MEASURE = r"""
import gc, json, sys, tempfile, torch
from dcae import DCAEWrapper, save_generator
from inference import DCAEInferenceWrapper

def status(key):  # MiB
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) / 1024

torch.manual_seed(0)
ckpt = tempfile.mktemp(suffix=".pt")
save_generator(DCAEWrapper(sys.argv[1]), ckpt)
w = DCAEInferenceWrapper(ckpt, sys.argv[1], None, device="cpu", with_vocoder=False)
audio = torch.randn(1, int(float(sys.argv[2]) * 22050)) * 0.1
gc.collect()
before = status("VmRSS")
open("/proc/self/clear_refs", "w").write("5")  # peak := current
z = w.encode(audio, 22050)
print(json.dumps({"extra_mib": status("VmHWM") - before, "base_mib": before, "frames": z.shape[-1],
                  "window": w.encode_chunk + w.encoder_field.left + w.encoder_field.right}))
"""


def extra_memory(seconds: float) -> dict:
    out = subprocess.run([sys.executable, "-c", MEASURE, str(DEFAULT_CONFIG), str(seconds)], cwd=REPO,
                         capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc to reset the peak RSS")
def test_encode_memory_is_bounded():
    three_minutes = extra_memory(180)
    six_minutes = extra_memory(360)
    print(f"extra peak RSS: 3 min {three_minutes['extra_mib']:.0f} MiB, 6 min {six_minutes['extra_mib']:.0f} MiB "
          f"(model loaded: {three_minutes['base_mib']:.0f} MiB; windows of {three_minutes['window']} latent frames)")
    assert three_minutes["extra_mib"] < 500
    assert six_minutes["extra_mib"] < three_minutes["extra_mib"] + 64  # does not grow with length
