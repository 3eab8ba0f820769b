"""Progress bars that keep logs readable: a tqdm bar on a terminal; when stderr goes to a file or a
pipe (a cluster job's log) no bar at all, so that the log reads line by line: the error lines, the
periodic lines long jobs print instead (:func:`is_terminal`), and the summaries."""
from __future__ import annotations

import sys
from typing import IO, Any, Iterable

from tqdm import tqdm


def is_terminal(stream: IO | None = None) -> bool:
    """Whether ``stream`` (default: stderr, where the bars go) is an interactive terminal."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or not a real stream
        return False


def progress_bar(iterable: Iterable | None = None, **kwargs: Any) -> tqdm:
    """``tqdm(iterable, **kwargs)`` on stderr, disabled unless stderr is a terminal (or when
    ``disable`` is given true). Messages go above it with ``tqdm.write``."""
    kwargs.setdefault("file", sys.stderr)
    kwargs["disable"] = bool(kwargs.get("disable", False)) or not is_terminal(kwargs["file"])
    return tqdm(iterable, **kwargs)
