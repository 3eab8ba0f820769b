"""Corpus scale: what the TTS trainers' data path costs as the corpus grows, per layout.

    python benchmarks/corpus_scale.py --root /scratch/corpus-scale [--sizes 100000,1000000,10000000]

For each size it writes a synthetic corpus (small latents: 8 values x 2-6 frames, 8-16 tokens per
utterance) as Parquet shards (vectorised, row groups of 256 rows) and, up to ``--manifest-max`` rows,
as a per-file ``manifest.jsonl`` (with latent and token files up to ``--files-max`` rows: a million
small files take an hour to write, which is the point of shards). Then, in fresh processes:

- **start-up**: from the process's start to the first batch of a 2-worker DataLoader over the stream
  of rank 0 of 2 (``open_corpus`` + :class:`dcae.corpus.stream.BatchStream` + the first window), the
  part after the imports shown apart, and the resident memory of the main process then (a per-file
  corpus written without its files: up to the manifest read, which is what grows with the corpus);
- **read**: 2 ranks x 2 DataLoader workers reading batches for ``--seconds`` seconds (the two rank
  processes run together): rows per second summed over the ranks, and the resident (RSS) and
  proportional (PSS: shared pages split among the processes sharing them) memory of every rank's
  main process and workers at the end (the largest of each).

The per-file layout's start-up at a size without files is the manifest read alone (what every rank
does before its first batch); its read rate needs the files. Prints a table and its Markdown.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

STARTED = time.perf_counter()
DIM = 8


# ---------------------------------------------------------------------------------------- corpora
def write_shards(root: Path, rows: int, rows_per_shard: int = 500_000, seed: int = 0) -> None:
    """``rows`` synthetic utterances as Parquet shards in our schema, plus shards.json and stats.json."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch

    from dcae.corpus.shards import META_KEY, ROW_GROUP_ROWS, SCHEMA, index_shards, write_index
    from dcae.corpus.stats import RunningStats

    rng = np.random.default_rng(seed)
    (root / "shards").mkdir(parents=True, exist_ok=True)
    schema = pa.schema([SCHEMA.field(n) for n in ("id", "text", "audio_path", "num_frames", "duration", "latent",
                                                   "tokens", "token_rate")])
    for s, start in enumerate(range(0, rows, rows_per_shard)):
        n = min(rows_per_shard, rows - start)
        frames = rng.integers(2, 7, n)
        ntok = rng.integers(8, 17, n)
        values = rng.standard_normal(int(frames.sum()) * DIM).astype(np.float32)
        inner = np.concatenate([[0], np.cumsum(np.repeat(frames, DIM))]).astype(np.int32)
        outer = np.arange(0, n * DIM + 1, DIM, dtype=np.int32)
        latent = pa.ListArray.from_arrays(pa.array(outer), pa.ListArray.from_arrays(pa.array(inner), pa.array(values)))
        token_offsets = np.concatenate([[0], np.cumsum(ntok)]).astype(np.int32)
        tokens = pa.ListArray.from_arrays(pa.array(token_offsets), pa.array(rng.integers(0, 256, int(ntok.sum()),
                                                                                            dtype=np.int32)))
        ids = pa.array([f"u{start + i:09d}" for i in range(n)])
        stats = RunningStats(DIM)
        x = values.reshape(-1, DIM)  # not the (D, T) order, but the same values: the sums are what matter here
        stats.total += torch.from_numpy(x.sum(0, dtype=np.float64))
        stats.total_sq += torch.from_numpy((x.astype(np.float64) ** 2).sum(0))
        stats.count += int(frames.sum())
        table = pa.Table.from_arrays([ids, pa.array(["a short sentence"] * n), pa.array([""] * n),
                                      pa.array(frames, pa.int64()), pa.array(frames / 5.383, pa.float64()), latent,
                                      tokens, pa.array(np.full(n, 25.0), pa.float64())], schema=schema)
        meta = {"sample_rate": 22050, "hop_length": 256, "frame_rate": 22050 / 4096, "model": "synthetic",
                "latent_dim": DIM, "token_rate": 25.0, "codebook_size": 256, "stats": stats.to_dict()}
        table = table.replace_schema_metadata({META_KEY: json.dumps(meta).encode()})
        pq.write_table(table, root / "shards" / f"{s:05d}.parquet", row_group_size=ROW_GROUP_ROWS, compression="zstd")
    write_index(root, index_shards(root, listed=False)[0])


def write_manifest(root: Path, rows: int, with_files: bool, seed: int = 0) -> None:
    """``rows`` synthetic rows in ``manifest.jsonl`` (+ stats.json), and their latent and token files when asked."""
    import numpy as np
    import torch

    from dcae.corpus import LatentMeta, LatentStats, save_latent, save_tokens

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    meta = LatentMeta(22050, 256, 22050 / 4096, 0, "synthetic")
    with open(root / "manifest.jsonl", "w") as f:
        for i in range(rows):
            uid, frames, ntok = f"u{i:09d}", int(rng.integers(2, 7)), int(rng.integers(8, 17))
            latent_path, token_path = f"latents/{i % 256:02x}/{uid}.safetensors", f"tokens/{i % 256:02x}/{uid}.safetensors"
            if with_files:
                save_latent(root / latent_path, torch.randn(DIM, frames), meta)
                save_tokens(root / token_path, torch.randint(0, 256, (ntok,)), 25.0)
            f.write(json.dumps({"id": uid, "audio_path": "", "latent_path": latent_path, "num_frames": frames,
                                "duration": frames / 5.383, "text": "a short sentence", "token_path": token_path,
                                "num_tokens": ntok, "token_rate": 25.0}) + "\n")
    LatentStats(torch.zeros(DIM), torch.ones(DIM), rows).save(root / "stats.json")


# ---------------------------------------------------------------------------------------- probes (fresh processes)
def memory(pid: int) -> tuple[float, float]:
    """(RSS, PSS) in MB of process ``pid``. PSS counts a page shared by n processes as 1/n: DataLoader
    workers are forked and share their parent's pages until they touch them, so RSS counts those pages
    in every process and PSS once in all."""
    rss = pss = 0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            name, _, value = line.partition(":")
            if name == "Rss":
                rss = int(value.split()[0])
            elif name == "Pss":
                pss = int(value.split()[0])
    except OSError:
        pass
    return rss / 1024, pss / 1024


def children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def item(row, rng):
    import torch

    return {"latent": torch.from_numpy(row["latent"]), "tokens": torch.as_tensor(row["tokens"])}


def collate(items):
    return len(items)


def length(it) -> int:
    return int(it["latent"].shape[-1])


def make_stream(corpus_path: str, rank: int, world: int, workers: int):
    from dcae.corpus.stream import BatchStream, open_corpus

    corpus = open_corpus(corpus_path)
    return BatchStream(corpus, item, collate, length, seed=0, batch_size=64, rank=rank, world_size=world,
                       workers=workers, columns=["latent", "tokens"])


def loader(stream, workers: int):
    import torch
    from torch.utils.data import DataLoader

    return DataLoader(stream, batch_size=None, num_workers=workers, collate_fn=lambda b: b,
                      generator=torch.Generator(), persistent_workers=workers > 0,
                      prefetch_factor=4 if workers else None)


def probe_startup(corpus_path: str, workers: int, first_batch: bool) -> dict:
    import torch  # noqa: F401

    import dcae.corpus.stream  # noqa: F401

    imported = time.perf_counter()
    stream = make_stream(corpus_path, 0, 2, workers)
    if first_batch:  # a per-file corpus written without its files: the manifest read alone
        next(iter(loader(stream, workers)))
    done = time.perf_counter()
    return {"total_s": done - STARTED, "after_imports_s": done - imported, "rss_mb": memory(os.getpid())[0]}


def probe_read(corpus_path: str, rank: int, world: int, workers: int, seconds: float) -> dict:
    stream = make_stream(corpus_path, rank, world, workers)
    it = iter(loader(stream, workers))
    next(it)
    rows, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        rows += next(it)[1]
    elapsed = time.perf_counter() - start
    main = memory(os.getpid())
    kids = [memory(pid) for pid in children(os.getpid())]
    return {"rows": rows, "seconds": elapsed, "main_rss_mb": main[0], "main_pss_mb": main[1],
            "worker_rss_mb": [k[0] for k in kids], "worker_pss_mb": [k[1] for k in kids]}


# ---------------------------------------------------------------------------------------- the benchmark
def probe(*args: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, __file__, "--probe", *args], stdout=subprocess.PIPE, text=True, env=env)


def result(process: subprocess.Popen) -> dict:
    out, _ = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"probe failed ({process.returncode}): {out[-2000:]}")
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", type=Path, help="where the synthetic corpora go (GBs at 10M rows)")
    p.add_argument("--sizes", default="100000,1000000,10000000")
    p.add_argument("--manifest-max", type=int, default=1_000_000, help="largest per-file manifest written")
    p.add_argument("--files-max", type=int, default=100_000, help="largest per-file layout written with its files")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--probe", nargs="+", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.probe:
        kind, rest = args.probe[0], args.probe[1:]
        out = probe_startup(rest[0], int(rest[1]), rest[2] == "1") if kind == "startup" else \
            probe_read(rest[0], int(rest[1]), int(rest[2]), int(rest[3]), float(rest[4]))
        print(json.dumps(out))
        return
    if args.root is None:
        p.error("--root is required")
    from benchmarks.common import machine

    print(machine())
    table = []
    for size in (int(s) for s in args.sizes.split(",")):
        layouts = {"shards": args.root / f"shards-{size}"}
        if size <= args.manifest_max:
            layouts["manifest"] = args.root / f"files-{size}"
        for name, folder in layouts.items():
            if not (folder / ("shards.json" if name == "shards" else "manifest.jsonl")).exists():
                started = time.perf_counter()
                write_shards(folder, size) if name == "shards" else write_manifest(folder, size, size <= args.files_max)
                print(f"wrote {name} {size}: {time.perf_counter() - started:.0f} s", flush=True)
            corpus = str(folder if name == "shards" else folder / "manifest.jsonl")
            has_files = name == "shards" or size <= args.files_max
            start = result(probe("startup", corpus, str(args.workers), "1" if has_files else "0"))
            row = {"rows": size, "layout": name, **{f"startup_{k}": v for k, v in start.items()}}
            if has_files:
                ranks = [probe("read", corpus, str(r), "2", str(args.workers), str(args.seconds)) for r in range(2)]
                reads = [result(r) for r in ranks]
                row.update(rows_per_s=sum(r["rows"] / r["seconds"] for r in reads),
                           main_rss_mb=max(r["main_rss_mb"] for r in reads),
                           main_pss_mb=max(r["main_pss_mb"] for r in reads),
                           worker_rss_mb=max(max(r["worker_rss_mb"], default=0) for r in reads),
                           worker_pss_mb=max(max(r["worker_pss_mb"], default=0) for r in reads))
            table.append(row)
            print(json.dumps(row), flush=True)
    print("\n| rows | layout | start-up total (s) | of which after imports (s) | RSS at first batch (MB) | "
          "rows/s (2 ranks x 2 workers) | rank RSS / PSS (MB) | worker RSS / PSS (MB) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in table:
        read = (f"{r['rows_per_s']:,.0f} | {r['main_rss_mb']:.0f} / {r['main_pss_mb']:.0f} | "
                f"{r['worker_rss_mb']:.0f} / {r['worker_pss_mb']:.0f}") if "rows_per_s" in r else "- | - | -"
        print(f"| {r['rows']:,} | {r['layout']} | {r['startup_total_s']:.1f} | {r['startup_after_imports_s']:.2f} | "
              f"{r['startup_rss_mb']:.0f} | {read} |")


if __name__ == "__main__":
    main()
