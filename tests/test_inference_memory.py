"""Bounded memory: encoding long audio works in windows, so the extra memory does not grow with length.

Each measurement runs in a fresh process and reads the peak resident set size (ru_maxrss).
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from .conftest import DEFAULT_CONFIG, REPO

MEASURE = r"""
import json, resource, sys, tempfile, torch
from dcae import DCAEWrapper
from inference import DCAEInferenceWrapper
torch.manual_seed(0)
ckpt = tempfile.mktemp(suffix=".pt")
torch.save(DCAEWrapper(sys.argv[1]).state_dict(), ckpt)
w = DCAEInferenceWrapper(ckpt, sys.argv[1], None, device="cpu", with_vocoder=False)
peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB
sr = 22050
w.encode(torch.randn(1, 40 * sr) * 0.1, sr)        # warm-up: one full window and its buffers
before = peak()
z = w.encode(torch.randn(1, int(float(sys.argv[2]) * sr)) * 0.1, sr)
print(json.dumps({"extra_mib": peak() - before, "base_mib": before, "frames": z.shape[-1]}))
"""


def extra_memory(seconds: float) -> dict:
    out = subprocess.run([sys.executable, "-c", MEASURE, str(DEFAULT_CONFIG), str(seconds)], cwd=REPO,
                         capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_encode_memory_is_bounded():
    three_minutes = extra_memory(180)
    six_minutes = extra_memory(360)
    print(f"extra peak RSS: 3 min {three_minutes['extra_mib']:.0f} MiB, 6 min {six_minutes['extra_mib']:.0f} MiB "
          f"(model + warm-up {three_minutes['base_mib']:.0f} MiB)")
    assert three_minutes["extra_mib"] < 512
    assert six_minutes["extra_mib"] < three_minutes["extra_mib"] + 64  # does not grow with length
