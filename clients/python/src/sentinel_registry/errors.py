"""The one exception type of the client's calls, its "no worker available" subclass, and a draining WorkerNode's refusal."""

from __future__ import annotations

from datetime import datetime
from typing import Optional, Sequence, Tuple

import grpc

REMOVAL_REASON_TRAILER = "sentinel-removal-reason"
"""The trailing metadata key in which the registry says why a worker it no longer has left."""

DRAIN_REMOVALS = frozenset({"drained", "drain_deadline"})
"""The removal reasons of a drain: the worker must not register again."""


class RegistryError(Exception):
    """A registry call failed.

    ``str(error)`` is the server's status details verbatim (``worker
    worker-1-abc not found`` for an unknown id, the field and the rule for
    INVALID_ARGUMENT, the range for a task count that would leave
    0..max_concurrent_tasks as FAILED_PRECONDITION), so code that tests
    ``"not found" in str(error)`` as the usage guide does keeps working.

    Attributes:
        code: the ``grpc.StatusCode`` of the failure.
        code_name: its name, e.g. ``"NOT_FOUND"``.
        details: the status details as the server sent them ("" if none).
        method: the client method that failed, e.g. ``"heartbeat"``.
        trailing_metadata: the call's trailing metadata, as (key, value) pairs.
        removal_reason: why the registry removed the worker a NOT_FOUND (or a
            removed worker's UNAUTHENTICATED) is about, when it says.
    """

    def __init__(
        self,
        method: str,
        code: grpc.StatusCode,
        details: str,
        trailing_metadata: Sequence[Tuple[str, object]] = (),
    ) -> None:
        # grpc gives no details for some failures; say at least what failed and how.
        super().__init__(details or f"{method} failed with {code.name}")
        self.method = method
        self.code = code
        self.details = details
        self.trailing_metadata = tuple(trailing_metadata)

    @property
    def code_name(self) -> str:
        """The status name, e.g. ``"NOT_FOUND"`` or ``"UNAVAILABLE"``."""
        return self.code.name

    @property
    def removal_reason(self) -> Optional[str]:
        """Why the worker is gone, from the ``sentinel-removal-reason`` trailer; None when the registry did not say.

        ``"unregistered"``, ``"expired"``, ``"replaced"``, ``"drained"`` or
        ``"drain_deadline"`` (the watch's ``removal_reason`` names), sent with
        a NOT_FOUND, or an UNAUTHENTICATED for a removed worker's own token,
        when the registry saw the worker leave recently. A registry older
        than the trailer never sends it.
        """
        for key, value in self.trailing_metadata:
            if str(key).lower() == REMOVAL_REASON_TRAILER:
                reason = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
                return reason or None
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(method={self.method!r}, code={self.code_name}, details={self.details!r})"

    @staticmethod
    def from_rpc_error(method: str, error: grpc.RpcError) -> "RegistryError":
        """Wraps the ``grpc.RpcError`` a call raised, keeping its code and details.

        The result is a :class:`NoWorkerAvailableError` for RESOURCE_EXHAUSTED
        on ``acquire_worker``.
        """
        code: Optional[grpc.StatusCode] = None
        details = ""
        trailing: Sequence[Tuple[str, object]] = ()
        # Every RpcError raised by a call is also a grpc.Call; one raised by
        # other grpc machinery may not be.
        if isinstance(error, grpc.Call):
            code = error.code()
            details = error.details() or ""
            trailing = error.trailing_metadata() or ()
        if code is None:
            code, details = grpc.StatusCode.UNKNOWN, details or str(error)
        cls = NoWorkerAvailableError if method == "acquire_worker" and code is grpc.StatusCode.RESOURCE_EXHAUSTED else RegistryError
        error_out = cls(method, code, details, trailing)
        error_out.__cause__ = error
        return error_out


def record_lost(error: RegistryError) -> bool:
    """Whether a failure says the registry no longer has the worker's record.

    NOT_FOUND, or, with authentication on, UNAUTHENTICATED for the worker's own
    token, which dies with its record ("worker ... not found: its token is no
    longer valid").
    """
    return error.code is grpc.StatusCode.NOT_FOUND or (error.code is grpc.StatusCode.UNAUTHENTICATED and "not found" in error.details)


def drain_removal(error: RegistryError) -> Optional[str]:
    """``"drained"`` or ``"drain_deadline"`` when a failure says a drain removed the worker; None otherwise.

    A worker removed by a drain must not register again; one lost any other
    way (expired, replaced, unregistered, or a reason the registry did not
    give) may.
    """
    reason = error.removal_reason
    return reason if reason in DRAIN_REMOVALS and record_lost(error) else None


class NoWorkerAvailableError(RegistryError):
    """``acquire_worker`` found no worker: none matched the query, or none had a free slot.

    The server answers RESOURCE_EXHAUSTED and says which of the two in the
    details. Catch this to wait and try again; any other failure is a plain
    :class:`RegistryError`.
    """


class WorkerDrainingError(RuntimeError):
    """``WorkerNode.run_task`` refused a task: the node is draining, or has drained.

    The registry asked the worker to drain (``drain_worker``), or the node is
    stopping (``stop()`` drains first). Tasks already running finish; no new
    one starts on this node, so give the task to another worker. Not a
    :class:`RegistryError`: no call was made.

    Attributes:
        worker_id: the worker that is draining (None if it never registered).
        drain_deadline: when the registry removes the worker whatever it
            still runs (a UTC ``datetime``), or None when not known.
    """

    def __init__(self, worker_id: Optional[str], drain_deadline: Optional[datetime] = None, drained: bool = False) -> None:
        if drained:
            message = f"worker {worker_id} has drained: it takes no new task"
        else:
            until = f" until its removal at {drain_deadline.isoformat()}" if drain_deadline is not None else ""
            message = f"worker {worker_id} is draining: it takes no new task, only finishes the running ones{until}"
        super().__init__(message)
        self.worker_id = worker_id
        self.drain_deadline = drain_deadline
