"""A WorkerNode's tasks: which may start (TaskGate), and the registry's bookkeeping around each (run_counted)."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Callable, List, Mapping, Optional, Sequence, TypeVar

from .errors import RegistryError

if TYPE_CHECKING:
    from .client import WorkerRegistryClient
    from .models import Worker

T = TypeVar("T")


class TaskGate:
    """The tasks running on a node, and whether new ones may start.

    Open, it admits every task; ``close()`` (a drain) admits none from then
    on, for good. ``on_drained`` is called once, on whichever thread gets
    there, when the gate is closed and no task runs any more. Thread-safe.
    """

    def __init__(self, on_drained: Callable[[], None]) -> None:
        self._condition = threading.Condition()
        self._running = 0
        self._closed = False
        self._drained = False
        self._on_drained = on_drained

    @property
    def running(self) -> int:
        """Tasks admitted and not yet finished."""
        with self._condition:
            return self._running

    @property
    def closed(self) -> bool:
        """Whether the gate admits no more tasks."""
        with self._condition:
            return self._closed

    def enter(self) -> bool:
        """Admits one task, or returns False when the gate is closed. Pair each True with ``leave()``."""
        with self._condition:
            if self._closed:
                return False
            self._running += 1
            return True

    def leave(self) -> None:
        """Ends one admitted task."""
        with self._condition:
            self._running -= 1
            self._condition.notify_all()
        self._check_drained()

    def close(self) -> None:
        """Admits no task from now on. Idempotent."""
        with self._condition:
            self._closed = True
        self._check_drained()

    def wait_drained(self, timeout_s: Optional[float] = None) -> bool:
        """Blocks until no task runs (or ``timeout_s`` passes); returns whether none does."""
        with self._condition:
            return self._condition.wait_for(lambda: self._running == 0, timeout_s)

    def _check_drained(self) -> None:
        with self._condition:
            if not self._closed or self._running > 0 or self._drained:
                return
            self._drained = True
        self._on_drained()


def run_counted(
    client: "WorkerRegistryClient",
    worker_id: str,
    fn: Callable[..., T],
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    clock: Callable[[], float],
    record_still_ours: Callable[[], bool],
    record_removed: Callable[[RegistryError], bool],
    observe: Callable[["Worker"], None],
    *,
    refused: Callable[[RegistryError], BaseException] = lambda error: error,
) -> T:
    """Runs ``fn`` with the task count raised around it, and records its completion.

    The count goes up by one before ``fn`` runs; afterwards the completion is
    recorded (success = ``fn`` raised nothing) with the duration measured on
    ``clock``, and the count goes back down whatever happened. Each step
    after ``fn`` is skipped once ``record_still_ours()`` is False, and a
    failure for which ``record_removed(error)`` is True is ignored: the record
    it would correct is gone. ``observe`` sees the worker as each call answered it.

    Raises:
        ``refused(error)`` (by default the RegistryError itself): if the count
            cannot be raised (``fn`` is not run).
        RegistryError: if ``fn`` succeeded but a step after it failed.
        Whatever ``fn`` raised, unchanged, even when a step after it failed too.
    """
    try:
        counted = client.update_task_count(worker_id, 1)
    except RegistryError as error:
        raise refused(error)
    observe(counted)
    started = clock()
    task_error: Optional[BaseException] = None
    result = None
    try:
        result = fn(*args, **kwargs)
    except BaseException as error:  # noqa: B902 - the count must come down even on KeyboardInterrupt
        task_error = error
    duration_ms = max(0.0, (clock() - started) * 1000)
    bookkeeping_errors: List[RegistryError] = []
    for step in (
        lambda: client.record_task_completion(worker_id, task_error is None, duration_ms),
        lambda: client.update_task_count(worker_id, -1),
    ):
        if not record_still_ours():
            break
        try:
            observe(step())
        except RegistryError as error:
            if record_still_ours() and not record_removed(error):
                bookkeeping_errors.append(error)
    if task_error is not None:
        raise task_error
    if bookkeeping_errors:
        raise bookkeeping_errors[0]
    return result  # type: ignore[return-value]
