"""The one exception type of the client, and its "no worker available" subclass."""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import grpc


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


class NoWorkerAvailableError(RegistryError):
    """``acquire_worker`` found no worker: none matched the query, or none had a free slot.

    The server answers RESOURCE_EXHAUSTED and says which of the two in the
    details. Catch this to wait and try again; any other failure is a plain
    :class:`RegistryError`.
    """
