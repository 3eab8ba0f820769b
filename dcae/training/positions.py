"""Where a streamed dataset is, so that a resumed run continues exactly.

A stream (such as :class:`dcae.corpus.stream.BatchStream`) yields ``(position, batch)`` with
position ``(worker role, epoch, window, batch)``; the DataLoader hands its workers' batches out
round-robin. :class:`PositionLog` keeps the last position of each role and the role of the next
batch; its :meth:`~PositionLog.state` is saved with each checkpoint (one per rank) and given back
to the stream's ``resume`` on restart.
"""
from __future__ import annotations

from typing import Any

Position = tuple[int, int, int, int]  # (worker role, epoch, window, batch)


class PositionLog:
    """The harness's record of the batches a rank consumed: the last position of each worker role and
    the role of the next batch (the DataLoader hands out batches round-robin over the workers)."""

    def __init__(self, workers: int, starts: dict[int, tuple[int, int, int]] | None = None, next_role: int = 0):
        self.workers = max(1, workers)
        self.last: dict[int, tuple[int, int, int]] = {}
        self.starts = dict(starts or {})
        self.next_role = next_role

    def consumed(self, position: Position) -> None:
        role, epoch, window, batch = position
        self.last[role] = (epoch, window, batch)
        self.next_role = (role + 1) % self.workers

    def state(self) -> dict[str, Any]:
        """Where each role continues: right after its last batch (or where it was to start)."""
        roles = {str(role): list(pos) for role, pos in self.starts.items()}
        roles.update({str(role): [epoch, window, batch + 1] for role, (epoch, window, batch) in self.last.items()})
        return {"workers": self.workers, "roles": roles, "next_role": self.next_role}
