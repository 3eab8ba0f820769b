"""benchmarks/gpu_check.py, the one-command GPU check, runs end to end on the CPU with --quick (tiny
sizes), so that it is known to work before any GPU time is spent on it."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO

SCRIPT = REPO / "benchmarks" / "gpu_check.py"


def test_unknown_stage_is_refused_in_one_line(tmp_path):
    result = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--quick", "--out", str(tmp_path),
                             "--stages", "tests,warp"], capture_output=True, text=True)
    assert result.returncode == 2
    assert "unknown stage(s) warp" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_quick_run_on_cpu_reaches_the_summary_with_every_stage(tmp_path, speech_dir):
    result = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--quick", "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=3000)
    print(result.stdout[-6000:], result.stderr[-3000:])
    assert result.returncode == 0
    results = json.loads((tmp_path / "results.json").read_text())
    stages = results["stages"]
    assert list(stages) == ["tests", "numerics", "export", "reconstruct", "train", "tts", "kernel", "nccl"]
    assert all(s["status"] == "ok" for s in stages.values())
    assert " passed" in stages["tests"]["figures"]["summary"] and "failed" not in stages["tests"]["figures"]["summary"]
    for errors in stages["numerics"]["figures"].values():  # bf16 vs fp32 where the CPU has native bf16
        assert all(0 <= e < 0.2 for e in errors.values()), errors
    export = stages["export"]["figures"]
    assert export["dcae export fp32"]["x_real_time"] > 0 and 0 < next(
        v for k, v in export.items() if k.startswith("encoder alone"))["fraction_of_peak"] < 1.5
    assert stages["reconstruct"]["figures"]["ours fp32"]["rel_error_vs_reference"] < 1e-4
    assert stages["train"]["figures"]["ours fp32"]["ms_per_step"] > 0
    assert stages["tts"]["figures"]["first_audio_s"] > 0
    assert stages["kernel"]["figures"] == {"skipped": "not a CUDA device"}
    summary = (tmp_path / "summary.md").read_text()
    assert all(f"| {name} | ok |" in summary for name in stages)
