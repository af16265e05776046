"""The client's connection: channel and credentials, per-call metadata, retries, prompt reconnects."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import grpc

from ._proto import service_grpc
from .backoff import Backoff
from .errors import RegistryError

Metadata = Sequence[Tuple[str, str]]

_DEFAULT_CHANNEL_OPTIONS = (
    # grpc core waits up to 120 s between reconnect attempts by default; a
    # client that retries on its own schedule should not find the channel
    # still backing off long after the registry is back.
    ("grpc.initial_reconnect_backoff_ms", 500),
    ("grpc.max_reconnect_backoff_ms", 10_000),
)

# grpc's connectivity thread polls for up to two 0.2 s rounds after a request
# to connect, and raises into threading.excepthook if the channel closes under
# it; close() lets it finish first.
_CONNECT_THREAD_GRACE_S = 0.5


@dataclass(frozen=True)
class RetryPolicy:
    """How calls that are safe to repeat are retried when they fail with UNAVAILABLE.

    Which calls those are is the client's decision (see ``WorkerRegistryClient``).
    """

    max_attempts: int = 4
    """Attempts in all, the first included. 1 disables retries."""
    backoff: Backoff = field(default_factory=lambda: Backoff(base_s=0.1, max_s=2.0))
    """Waits between attempts, with full jitter."""
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")


def _ignore_connectivity(_state: grpc.ChannelConnectivity) -> None:
    pass


class RegistryChannel:
    """One gRPC channel to the registry and the rules every call on it follows.

    Each call carries the caller's ``call_metadata`` and a bearer token: the
    token of the worker it names if this channel registered that worker, else
    the role token. Unary calls have a deadline; the ones the caller marks as
    retried are repeated on UNAVAILABLE with full-jitter backoff. Thread-safe.
    """

    def __init__(
        self,
        address: str,
        token: Optional[str],
        root_certificates: Optional[bytes],
        private_key: Optional[bytes],
        certificate_chain: Optional[bytes],
        tls: Optional[bool],
        timeout_s: float,
        retry: Optional[RetryPolicy],
        channel_options: Sequence[Tuple[str, object]],
        call_metadata: Optional[Callable[[str], Optional[Metadata]]],
    ) -> None:
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self._token = token
        self._timeout_s = timeout_s
        self._retry = retry or RetryPolicy(max_attempts=1)
        self._call_metadata = call_metadata
        self._worker_tokens: Dict[str, str] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._connect_requested_at = float("-inf")
        # Later options win in grpc core, so the caller's come last.
        options = list(_DEFAULT_CHANNEL_OPTIONS) + list(channel_options)
        secure = tls if tls is not None else any(x is not None for x in (root_certificates, private_key, certificate_chain))
        if secure:
            credentials = grpc.ssl_channel_credentials(root_certificates, private_key, certificate_chain)
            self._channel = grpc.secure_channel(address, credentials, options)
        else:
            self._channel = grpc.insecure_channel(address, options)
        self.stub = service_grpc.WorkerRegistryServiceStub(self._channel)

    @property
    def closed(self) -> bool:
        return self._closed

    # -- worker tokens ------------------------------------------------------------

    def remember_worker_token(self, worker_id: str, token: str) -> None:
        with self._lock:
            self._worker_tokens[worker_id] = token

    def forget_worker_token(self, worker_id: str) -> None:
        with self._lock:
            self._worker_tokens.pop(worker_id, None)

    def worker_token(self, worker_id: str) -> Optional[str]:
        with self._lock:
            return self._worker_tokens.get(worker_id)

    # -- calls --------------------------------------------------------------------

    def unary(self, method: str, rpc, request, worker_id: Optional[str] = None, retried: bool = False):
        """Calls ``rpc`` and returns its response.

        Raises:
            RegistryError: the call's status, after the last attempt; CANCELLED once closed.
        """
        attempts = self._retry.max_attempts if retried else 1
        for attempt in range(attempts):
            self._check_open(method)
            try:
                return rpc(request, timeout=self._timeout_s, metadata=self._metadata(method, worker_id))
            except grpc.RpcError as rpc_error:
                error = RegistryError.from_rpc_error(method, rpc_error)
            except ValueError as closed:
                # grpc raises ValueError for a call on a channel closed meanwhile.
                raise RegistryError(method, grpc.StatusCode.CANCELLED, f"WorkerRegistryClient is closed ({closed})") from closed
            if error.code is not grpc.StatusCode.UNAVAILABLE or attempt + 1 >= attempts or self._closed:
                raise error
            self.connect_now()
            self._retry.sleep(self._retry.backoff.delay_s(attempt))
            self.connect_now()
        raise AssertionError("unreachable")

    def open_stream(self, method: str, rpc, request, worker_id: Optional[str] = None):
        """Starts a streaming call (no deadline) and returns it; its failures surface while reading it."""
        self._check_open(method)
        return rpc(request, metadata=self._metadata(method, worker_id))

    def connect_now(self) -> None:
        """Asks the channel to connect now rather than on grpc's own schedule.

        After a failed connection, grpc core (1.51) leaves its subchannel idle
        until the address is resolved again, and a sync Python channel makes
        no progress while no call is polling it: a client that waits out its
        own backoff finds the registry unreachable for 5 to 30 seconds after
        it is back. Callers that retry call this when an attempt fails with
        UNAVAILABLE and just before the next one.
        """
        with self._lock:
            if self._closed:
                return
            self._connect_requested_at = time.monotonic()
        try:
            # grpc's connectivity thread checks the state with try_to_connect
            # and polls the channel for a moment; the callback is not needed.
            self._channel.subscribe(_ignore_connectivity, try_to_connect=True)
            self._channel.unsubscribe(_ignore_connectivity)
        except ValueError:
            pass  # closed meanwhile

    def close(self) -> None:
        """Closes the channel; running calls end with CANCELLED. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            since_connect_s = time.monotonic() - self._connect_requested_at
        if since_connect_s < _CONNECT_THREAD_GRACE_S:
            time.sleep(_CONNECT_THREAD_GRACE_S - since_connect_s)
        self._channel.close()

    def _metadata(self, method: str, worker_id: Optional[str]) -> Optional[List[Tuple[str, str]]]:
        metadata: List[Tuple[str, str]] = []
        if self._call_metadata is not None:
            try:
                metadata = list(self._call_metadata(method) or ())
            except Exception as error:
                raise RegistryError(method, grpc.StatusCode.INTERNAL, f"call_metadata failed: {error}") from error
        token = (self.worker_token(worker_id) if worker_id is not None else None) or self._token
        if token and not any(key.lower() == "authorization" for key, _ in metadata):
            metadata.append(("authorization", f"Bearer {token}"))
        return metadata or None

    def _check_open(self, method: str) -> None:
        if self._closed:
            raise RegistryError(method, grpc.StatusCode.CANCELLED, "WorkerRegistryClient is closed")
