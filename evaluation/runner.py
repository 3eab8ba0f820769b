"""Score many pairs (or do any per-file work) in parallel worker processes, with a progress bar."""
from __future__ import annotations

import contextlib
import functools
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Callable, Iterator, Sequence, TypeVar

import dcae.audio  # noqa: F401
from dcae.progress import progress_bar
from evaluation import mos
from evaluation.metrics import _mel_extractor
from evaluation.pairing import Pair
from evaluation.scoring import Row, available_metrics, empty_row, score_files
from evaluation.speaker import warm_up

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    return os.cpu_count() or 1


def _preload(metric_names: Sequence[str]) -> None:
    """Import the metric back-ends and build the mel filterbank (and the speaker encoder, the MOS model) once,
    before the workers start.

    Forked workers (the Linux default) then inherit them instead of each paying seconds of
    import time (torchcodec, librosa, pesq, pystoi, resemblyzer).
    """
    import pesq  # noqa: F401
    import pystoi  # noqa: F401


    _mel_extractor()
    load_models(metric_names)


def load_models(metric_names: Sequence[str]) -> None:
    """Load the models of the metrics that have one (SIM's speaker model, the MOS predictor) in this process,
    so that forked workers inherit them."""
    if "sim" in metric_names:
        warm_up()
    if "mos" in metric_names:
        mos.warm_up()


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """Run torch and BLAS on one thread inside the block (restored afterwards).

    The metrics work on short 1-D signals, where thread start-up and, on a busy machine, spinning
    threads cost more than they save (measured: 2x slower per file with 2 threads on 2 busy cores).
    BLAS is limited through threadpoolctl when it is installed.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with _blas_limit():
            yield
    finally:
        torch.set_num_threads(threads)


def _blas_limit():
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


_WORKER_LIMITS: list[object] = []  # keeps the worker's BLAS limit alive for the process lifetime


def _init_worker() -> None:
    """One process per core: each worker stays single-threaded for life."""
    import torch

    torch.set_num_threads(1)
    limit = _blas_limit()
    limit.__enter__()
    _WORKER_LIMITS.append(limit)


def map_in_workers(function: Callable[[T], R], items: Sequence[T], workers: int | None = None,
                   progress: bool = True, desc: str = "", on_crash: Callable[[T, Exception], R] | None = None,
                   preload: Callable[[], None] | None = None) -> list[R]:
    """``[function(item) for item in items]`` in ``workers`` single-threaded processes (default: one
    per core; 1 = in this process), with a progress bar; results in the order of ``items``.

    ``preload`` runs once in this process before the workers are forked (imports they inherit).
    An item whose worker crashes (e.g. killed by the OS) gets ``on_crash(item, error)`` instead of
    stopping the run (without ``on_crash`` the error propagates).
    """
    workers = default_workers() if workers is None else max(1, workers)
    workers = min(workers, max(1, len(items)))
    bar = progress_bar(total=len(items), desc=desc, unit="file", disable=not progress)
    results: list = [None] * len(items)
    if workers == 1:
        with single_threaded():
            for index, item in enumerate(items):
                results[index] = function(item)
                bar.update()
    else:
        if preload is not None:
            preload()
        with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker) as pool:
            futures = {pool.submit(function, item): index for index, item in enumerate(items)}
            for future in as_completed(futures):
                index = futures[future]
                try:
                    results[index] = future.result()
                except Exception as e:  # noqa: BLE001 - e.g. a worker killed by the OS
                    if on_crash is None:
                        raise
                    results[index] = on_crash(items[index], e)
                bar.update()
    bar.close()
    return results


def _score(pair: Pair, metric_names: tuple[str, ...]) -> Row:
    return score_files(pair.name, pair.ref, pair.deg, metric_names)


def _crashed(pair: Pair, error: Exception) -> Row:
    return empty_row(pair.name, f"scoring failed: {type(error).__name__}: {error}".splitlines()[0])


def score_pairs(pairs: Sequence[Pair], workers: int | None = None, progress: bool = True,
                desc: str = "Scoring", metric_names: Sequence[str] | None = None) -> list[Row]:
    """Score every pair; ``workers`` processes (default: one per core, 1 = in this process).

    ``metric_names`` defaults to every metric this installation can compute. A pair whose
    worker crashes gets a row with the crash reason instead of stopping the run.
    """
    names = tuple(metric_names or available_metrics())
    return map_in_workers(functools.partial(_score, metric_names=names), pairs, workers, progress, desc,
                          on_crash=_crashed, preload=functools.partial(_preload, names))
