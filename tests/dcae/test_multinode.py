"""torchrun across two hosts (two network namespaces on this machine, each its own address; gloo on
CPU, c10d rendezvous): an export over 2 nodes equals a single-process one, and a token-flow trainer
over 2 nodes whose worker on node 1 is killed comes back with ``--max-restarts 1`` from its last
checkpoint and logs the losses of an uninterrupted 2-node run (nothing lost or duplicated).
Skipped with the reason where network namespaces cannot be made (they need root and iproute2)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dcae import DCAEWrapper
from tests.conftest import REPO, TINY_CONFIG
from tests.dcae.training.test_harness import assert_same_history, synthetic_manifest
from tests.netns import cannot_make_namespaces, two_hosts

pytestmark = pytest.mark.slow
# a fresh rendezvous store per round (docs/corpus.md, "Many nodes"): with the store shared across rounds, a
# restarted rank can read the previous round's address of rank 0 and fail again, and the other node then waits
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}


@pytest.fixture(scope="module")
def hosts():
    reason = cannot_make_namespaces()
    if reason:
        pytest.skip(f"two hosts need network namespaces: {reason}")
    with two_hosts() as made:
        yield made


def torchrun(hosts, host: int, port: int, run_id: str, argv: list[str], max_restarts: int = 0) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
           "--rdzv-backend", "c10d", "--rdzv-endpoint", f"{hosts.address(0)}:{port}", "--rdzv-id", run_id,
           "--local-addr", hosts.address(host), "--max-restarts", str(max_restarts), "--monitor-interval", "0.5",
           *(["--rdzv-conf", "is_host=1"] if host == 0 else []), *argv]
    return subprocess.Popen(hosts.command(host, cmd), cwd=REPO, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def both(processes: list[subprocess.Popen], timeout: float = 600) -> str:
    """Wait for every agent; all succeeded; their output together."""
    outputs = [p.communicate(timeout=timeout)[0] for p in processes]
    for p, out in zip(processes, outputs):
        assert p.returncode == 0, out[-3000:]
    return "\n".join(outputs)


def children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return out


def worker_of(agent: subprocess.Popen) -> int:
    """The training process torchrun started on a host (``ip netns exec`` -> env -> torchrun -> worker)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        pids = [agent.pid]
        for _ in range(4):
            pids = [c for p in pids for c in children(p)]
            for pid in pids:
                try:
                    if b"tts.train" in Path(f"/proc/{pid}/cmdline").read_bytes() and \
                            b"torch.distributed.run" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                        return pid
                except OSError:
                    continue
        time.sleep(0.2)
    raise AssertionError("no training worker found under the node-1 agent")


def test_export_over_two_hosts_equals_one_process(hosts, tmp_path, speech_files):
    torch.manual_seed(0)
    ckpt = tmp_path / "g.pt"
    torch.save(DCAEWrapper(TINY_CONFIG).state_dict(), ckpt)
    filelist = tmp_path / "list.txt"
    filelist.write_text("".join(f"{p}|words {i}\n" for i, p in enumerate(speech_files[:10])))

    def args(out: Path) -> list[str]:
        return ["-m", "dcae.cli", "export", "--filelist", str(filelist), "--out", str(out), "--ae-model", str(ckpt),
                "--ae-config", str(TINY_CONFIG), "--device", "cpu", "--format", "shards", "--shard-mb", "0.01"]

    single = subprocess.run([sys.executable, *args(tmp_path / "one")], cwd=REPO, env=ENV, capture_output=True,
                            text=True, timeout=600)
    assert single.returncode == 0, single.stderr[-2000:]
    both([torchrun(hosts, h, 29611, "export", args(tmp_path / "two")) for h in (0, 1)])
    from dcae.corpus.stream import open_corpus

    one, two = open_corpus(tmp_path / "one"), open_corpus(tmp_path / "two")
    rows_one = {r["id"]: r for u in one.units for r in one.read(u)}
    rows_two = {r["id"]: r for u in two.units for r in two.read(u)}
    assert rows_one.keys() == rows_two.keys() and len(rows_one) == 10
    assert {s.path.name.split("-")[0] for s in two.shards} == {"2x0", "2x1"}  # both hosts wrote shards
    for uid, row in rows_one.items():
        assert torch.allclose(torch.from_numpy(row["latent"]), torch.from_numpy(rows_two[uid]["latent"]), atol=1e-5)


def test_trainer_over_two_hosts_survives_a_killed_worker(hosts, tmp_path):
    manifest = synthetic_manifest("token-flow", tmp_path / "data")
    steps = 24

    def args(out: Path) -> list[str]:
        return ["-m", "tts.train", "--model", "token-flow", "--manifest", str(manifest), "--output-dir", str(out),
                "--preset", "tiny", "--batch-size", "2", "--max-steps", str(steps), "--save-interval", "3",
                "--log-interval", "1", "--cpu-threads", "1", "--warmup-steps", "3", "--device", "cpu"]

    both([torchrun(hosts, h, 29621, "clean", args(tmp_path / "clean")) for h in (0, 1)])
    agents = [torchrun(hosts, h, 29631, "killed", args(tmp_path / "killed"), max_restarts=1) for h in (0, 1)]
    marker = tmp_path / "killed" / "checkpoints" / "state_3.pt"
    deadline = time.monotonic() + 600
    while not marker.exists():
        assert time.monotonic() < deadline and all(a.poll() is None for a in agents), "no checkpoint at step 3"
        time.sleep(0.05)
    os.kill(worker_of(agents[1]), signal.SIGKILL)  # node 1's worker dies; its agent restarts the group
    output = both(agents)
    assert "resumed from step" in output  # the group came back from a checkpoint, not from the start
    assert_same_history(tmp_path / "killed", tmp_path / "clean", steps)
    assert sorted(int(p.stem.split("_")[1]) for p in (tmp_path / "killed" / "checkpoints").glob("state_*.pt"))[-1] == steps
