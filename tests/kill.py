"""Kill a corpus command midway with a real SIGKILL (the resume tests of dcae tokens and dcae speakers)."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable


def sigkill_when(cmd: list[str], cwd: Path, env: dict[str, str], ready: Callable[[], bool],
                 timeout: float = 300.0) -> None:
    """Start ``cmd``, SIGKILL it as soon as ``ready()`` (polled every 20 ms) or after ``timeout`` seconds,
    and check that it was the kill that ended it."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    while time.time() < deadline and not ready():
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
