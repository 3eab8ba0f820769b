"""dcae.precision: ``auto`` takes bf16 only where the CPU computes it natively, an explicit bf16 on a CPU
that emulates it warns once in one line, and Muon's orthogonalization picks the fast dtype.

Each case runs in a fresh interpreter so that ``ATEN_CPU_CAPABILITY=avx2`` (with
``ONEDNN_MAX_CPU_ISA=AVX2``) can make this machine behave like a CPU without AVX512-BF16/AMX."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from dcae.precision import resolve_precision
from tests.conftest import REPO

AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}

PROBE = """
import json, sys, torch
from dcae.training.optim import MuonAdamW
from dcae.precision import cpu_capability, fast_matmul_dtype, native_bf16, resolve_precision
optimizer = MuonAdamW([torch.nn.Conv2d(4, 4, 3)], lr=1e-3)
first = resolve_precision("bf16", "cpu")
second = resolve_precision("bf16", "cpu")  # the warning is given once
print(json.dumps({"capability": cpu_capability(), "native": native_bf16("cpu"), "auto": resolve_precision("auto", "cpu"),
                  "bf16": [first, second], "fast": str(fast_matmul_dtype("cpu")), "muon": str(optimizer.ns_dtype)}))
"""


def probe(extra_env: dict[str, str]) -> tuple[dict, str]:
    env = {k: v for k, v in os.environ.items() if k not in AVX2}
    result = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, env={**env, **extra_env, "OMP_NUM_THREADS": "1"},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1]), result.stderr


def test_cpu_without_native_bf16_gets_fp32_and_one_warning():
    info, stderr = probe(AVX2)
    assert info["capability"] == "AVX2" and info["native"] is False
    assert info["auto"] == "fp32"
    assert info["bf16"] == ["bf16", "bf16"]  # an explicit bf16 still runs...
    warnings = [line for line in stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "emulated" in warnings[0] and "AVX2" in warnings[0]  # ...with one line, once
    assert info["fast"] == info["muon"] == "torch.float32"  # Newton-Schulz in fp32, not emulated bf16


def test_auto_follows_the_cpu_it_runs_on():
    info, stderr = probe({})
    expected = "bf16" if info["native"] else "fp32"
    assert info["auto"] == expected
    assert info["muon"] == info["fast"] == ("torch.bfloat16" if info["native"] else "torch.float32")
    assert ("warning:" in stderr) == (not info["native"])
    if info["native"]:
        assert info["capability"].startswith(("AVX512", "AMX"))


@pytest.mark.parametrize("name, message", [("fp16", "needs a CUDA device"), ("bf32", "unknown precision")])
def test_unusable_precisions_are_one_line_errors(name, message):
    with pytest.raises(ValueError, match=message):
        resolve_precision(name, "cpu")
