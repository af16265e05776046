"""A synchronous client of sentinel.registry.v1.WorkerRegistryService."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, List, Optional, Sequence, Tuple, TypeVar, Union

import grpc

from . import models
from ._proto import service_grpc, service_pb2
from .backoff import Backoff
from .errors import RegistryError
from .models import (
    Acquisition,
    EvictionResumed,
    RankedWorker,
    RegistryStats,
    ReleaseOutcome,
    Worker,
)
from .watch import WorkerWatch

log = logging.getLogger("sentinel_registry.client")

Metadata = Sequence[Tuple[str, str]]
HealthQuery = Union[None, str, Iterable[str]]

_Response = TypeVar("_Response")

_DEFAULT_CHANNEL_OPTIONS = (
    # grpc core waits up to 120 s between reconnect attempts by default; a
    # client that retries on its own schedule should not find the channel
    # still backing off long after the registry is back.
    ("grpc.initial_reconnect_backoff_ms", 500),
    ("grpc.max_reconnect_backoff_ms", 10_000),
)


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of calls that are safe to repeat, when they fail with UNAVAILABLE.

    Retried: get_worker, discover_workers (each page), get_workers_for_load_balancing,
    get_registry_stats, and release_worker, which the contract makes idempotent
    (a retry whose first attempt took effect answers ``"already-released"``).
    Other writes are never retried: a registration whose reply was lost may
    have happened, and repeating it would replace the worker.
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


# grpc's connectivity thread polls for up to two 0.2 s rounds after a request
# to connect, and raises into threading.excepthook if the channel closes under
# it; close() lets it finish first.
_CONNECT_THREAD_GRACE_S = 0.5

_RETRIED = frozenset({"get_worker", "discover_workers", "get_workers_for_load_balancing", "get_registry_stats", "release_worker"})


class WorkerRegistryClient:
    """A client of the worker registry, with the usage guide's operations in Python naming.

    Every call either returns plain dataclasses (see :mod:`sentinel_registry.models`)
    or raises :class:`~sentinel_registry.RegistryError` carrying the gRPC code
    name and the server's message. Arguments that cannot be sent (an unknown
    health name) raise ``ValueError`` or ``TypeError`` before any call.

    One instance is one gRPC channel; it is thread-safe, so share it. Call
    ``close()`` (or use it as a context manager) when done.

    Args:
        address: ``host:port`` of the registry.
        token: a role token from the registry's tokens file, sent as
            ``authorization: Bearer <token>``. Calls that name a worker this
            client registered send that worker's own token instead.
        root_certificates: PEM bytes of the CA that signed the server's
            certificate; giving it turns TLS on.
        private_key, certificate_chain: PEM bytes of a client certificate, for
            mutual TLS.
        tls: force TLS on (with the system's CAs when ``root_certificates`` is
            None) or off. Default: on when any certificate argument is given.
        timeout_s: deadline of each unary attempt, in seconds.
        retry: retries on UNAVAILABLE (see :class:`RetryPolicy`); None disables them.
        channel_options: extra grpc channel options, e.g. keepalive settings.
        call_metadata: called before every call (and every retry) with the
            method name; returns extra (key, value) metadata, e.g. a fresh
            short-lived token as ``authorization``.
        discover_page_size: page size ``discover_workers`` asks for while it
            follows page tokens, 1 to 10000.
    """

    def __init__(
        self,
        address: str = "localhost:50051",
        token: Optional[str] = None,
        root_certificates: Optional[bytes] = None,
        private_key: Optional[bytes] = None,
        certificate_chain: Optional[bytes] = None,
        *,
        tls: Optional[bool] = None,
        timeout_s: float = 5.0,
        retry: Optional[RetryPolicy] = RetryPolicy(),
        channel_options: Sequence[Tuple[str, object]] = (),
        call_metadata: Optional[Callable[[str], Optional[Metadata]]] = None,
        discover_page_size: int = 1000,
    ) -> None:
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        if not 1 <= discover_page_size <= 10_000:
            raise ValueError(f"discover_page_size must be from 1 to 10000, got {discover_page_size}")
        self.address = address
        self._token = token
        self._timeout_s = timeout_s
        self._retry = retry or RetryPolicy(max_attempts=1)
        self._call_metadata = call_metadata
        self._discover_page_size = discover_page_size
        self._worker_tokens: dict = {}
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
        self._stub = service_grpc.WorkerRegistryServiceStub(self._channel)

    # -- the guide's operations -------------------------------------------------

    def register_worker(self, node_id: str, capabilities: Sequence[str], max_concurrent_tasks: int) -> Worker:
        """Registers a worker and returns it with its new id. Not retried.

        A registration whose node_id already has a worker replaces that worker.
        The worker's own token, if the server issues one, is remembered and sent
        on later calls that name this worker.

        Raises:
            RegistryError: INVALID_ARGUMENT naming the field that breaks its rule.
        """
        if isinstance(capabilities, str):
            raise TypeError(f"capabilities must be a list of strings, not the string {capabilities!r}")
        response = self._unary(
            "register_worker",
            self._stub.RegisterWorker,
            service_pb2.RegisterWorkerRequest(node_id=node_id, capabilities=list(capabilities), max_concurrent_tasks=max_concurrent_tasks),
        )
        worker = models.to_worker(response.worker)
        if response.worker_token:
            with self._lock:
                self._worker_tokens[worker.id] = response.worker_token
        return worker

    def worker_token(self, worker_id: str) -> Optional[str]:
        """The token the registry issued to a worker this client registered, or None."""
        with self._lock:
            return self._worker_tokens.get(worker_id)

    def unregister_worker(self, worker_id: str) -> None:
        """Removes a worker at once. Not retried.

        Raises:
            RegistryError: NOT_FOUND if no such worker is registered.
        """
        self._unary("unregister_worker", self._stub.UnregisterWorker, service_pb2.UnregisterWorkerRequest(worker_id=worker_id), worker_id)
        with self._lock:
            self._worker_tokens.pop(worker_id, None)

    def heartbeat(self, worker_id: str) -> Worker:
        """Marks a worker alive now (one unary call; ``WorkerNode`` holds the stream instead). Not retried.

        Raises:
            RegistryError: NOT_FOUND if the worker was unregistered or cleaned up: register again.
        """
        response = self._unary("heartbeat", self._stub.Heartbeat, service_pb2.HeartbeatRequest(worker_id=worker_id), worker_id)
        return models.to_worker(response.worker)

    def update_task_count(self, worker_id: str, delta: int) -> Worker:
        """Adds ``delta`` to the worker's current task count (+1 when a task starts, -1 when it ends).

        Not retried: a repeat would count twice.

        Raises:
            RegistryError: FAILED_PRECONDITION if the count would leave
                0..max_concurrent_tasks (nothing changes); NOT_FOUND for an unknown worker.
        """
        response = self._unary(
            "update_task_count", self._stub.UpdateTaskCount, service_pb2.UpdateTaskCountRequest(worker_id=worker_id, delta=delta), worker_id
        )
        return models.to_worker(response.worker)

    def record_task_completion(self, worker_id: str, success: bool, duration_ms: float) -> Worker:
        """Records one completion, successful or failed, with its duration. Does not change the task count. Not retried.

        Raises:
            RegistryError: INVALID_ARGUMENT if duration_ms is not finite or outside 0..30 days;
                NOT_FOUND for an unknown worker.
        """
        response = self._unary(
            "record_task_completion",
            self._stub.RecordTaskCompletion,
            service_pb2.RecordTaskCompletionRequest(worker_id=worker_id, success=success, duration_ms=duration_ms),
            worker_id,
        )
        return models.to_worker(response.worker)

    def get_worker(self, worker_id: str) -> Worker:
        """Returns one worker. Retried on UNAVAILABLE.

        Raises:
            RegistryError: NOT_FOUND for an unknown worker.
        """
        response = self._unary("get_worker", self._stub.GetWorker, service_pb2.GetWorkerRequest(worker_id=worker_id), worker_id)
        return models.to_worker(response.worker)

    def discover_workers(
        self,
        capabilities: Optional[Iterable[str]] = None,
        health: HealthQuery = None,
        min_available_capacity: int = 0,
    ) -> List[Worker]:
        """Every worker that matches (all workers with no arguments), ordered by id.

        A worker must have all of ``capabilities``, be in one of the ``health``
        states (a name or a list of names), and have at least
        ``min_available_capacity`` free slots. Follows page tokens until the
        last page; each page is retried on UNAVAILABLE.
        """
        workers, _ = self._list("discover_workers", models.worker_filter(capabilities, health, min_available_capacity))
        return workers

    def get_workers_for_load_balancing(
        self,
        capabilities: Optional[Iterable[str]] = None,
        health: HealthQuery = None,
        min_available_capacity: int = 0,
        limit: Optional[int] = None,
    ) -> List[RankedWorker]:
        """The matching workers ranked for load balancing: healthy before degraded, then highest priority first.

        Without ``health`` the server considers healthy and degraded workers.
        ``limit`` caps the answer (server default 100, at most 10000).
        Retried on UNAVAILABLE.
        """
        response = self._unary(
            "get_workers_for_load_balancing",
            self._stub.GetWorkersForLoadBalancing,
            service_pb2.GetWorkersForLoadBalancingRequest(
                filter=models.worker_filter(capabilities, health, min_available_capacity), limit=limit or 0
            ),
        )
        return [models.to_ranked_worker(ranked) for ranked in response.workers]

    def get_registry_stats(self) -> RegistryStats:
        """Counts by health, capacity, completion totals, revision, reservations and eviction status. Retried on UNAVAILABLE."""
        return models.to_registry_stats(self._unary("get_registry_stats", self._stub.GetRegistryStats, service_pb2.GetRegistryStatsRequest()))

    def resume_eviction(self) -> EvictionResumed:
        """Ends a pause of eviction now (needs an admin token when authentication is on). Not retried."""
        return models.to_eviction_resumed(self._unary("resume_eviction", self._stub.ResumeEviction, service_pb2.ResumeEvictionRequest()))

    # -- beyond the guide: slots and watch --------------------------------------

    def acquire_worker(
        self,
        capabilities: Optional[Iterable[str]] = None,
        health: HealthQuery = None,
        min_available_capacity: int = 0,
    ) -> Acquisition:
        """Takes a slot on the best-ranked matching worker with a free slot, atomically. Not retried.

        Release it with ``release_worker(acquisition.reservation_id, ...)``
        when the task ends, or use :meth:`worker`, which always does.

        Raises:
            NoWorkerAvailableError: no worker matched, or none had a free slot
                (RESOURCE_EXHAUSTED; the message says which).
            RegistryError: for any other failure.
        """
        response = self._unary(
            "acquire_worker",
            self._stub.AcquireWorker,
            service_pb2.AcquireWorkerRequest(filter=models.worker_filter(capabilities, health, min_available_capacity)),
        )
        return models.to_acquisition(response)

    def release_worker(self, reservation_id: str, success: bool, duration_ms: float) -> ReleaseOutcome:
        """Frees a reservation's slot and records the task's outcome, in one transaction.

        Returns ``"released"``, ``"already-released"`` (a repeat: nothing
        changed) or ``"expired"`` (the slot had already been taken back; the
        outcome was recorded). Idempotent, so retried on UNAVAILABLE.

        Raises:
            RegistryError: NOT_FOUND for a reservation the registry never granted or has forgotten.
        """
        response = self._unary(
            "release_worker",
            self._stub.ReleaseWorker,
            service_pb2.ReleaseWorkerRequest(reservation_id=reservation_id, success=success, duration_ms=duration_ms),
        )
        return models.to_release_outcome(response.outcome)

    @contextlib.contextmanager
    def worker(
        self,
        capabilities: Optional[Iterable[str]] = None,
        health: HealthQuery = None,
        min_available_capacity: int = 0,
    ) -> Iterator[Acquisition]:
        """Acquires a slot for the ``with`` block and always releases it.

        The release records ``success`` = the block raised nothing, and the
        block's duration measured on the monotonic clock::

            with registry.worker(capabilities=["coder"]) as acquired:
                send_task_to(acquired.worker)

        Raises:
            NoWorkerAvailableError: on entry, when no worker has a free slot.
            RegistryError: on exit, if the block succeeded but the release
                failed. When the block raised, its exception propagates and a
                failed release is only logged.
        """
        acquired = self.acquire_worker(capabilities, health, min_available_capacity)
        started = time.monotonic()
        succeeded = False
        try:
            yield acquired
            succeeded = True
        finally:
            duration_ms = (time.monotonic() - started) * 1000
            try:
                self.release_worker(acquired.reservation_id, succeeded, duration_ms)
            except RegistryError as error:
                if succeeded:
                    raise
                log.warning(
                    "release after a failed task failed; the slot returns when the reservation expires: %s, %s: %s",
                    acquired.reservation_id,
                    error.code_name,
                    error.details,
                )

    def watch_workers(
        self,
        capabilities: Optional[Iterable[str]] = None,
        health: HealthQuery = None,
        start_revision: int = 0,
        *,
        backoff: Optional[Backoff] = None,
    ) -> WorkerWatch:
        """Worker events in revision order, as an iterator that resumes by itself.

        Each item is a :class:`~sentinel_registry.WorkerEvent` for a worker
        that has all of ``capabilities`` and whose health before or after the
        event is one of ``health`` (any when None). ``start_revision`` is the
        first revision to deliver (e.g. ``stats.revision + 1``); 0 means from
        now on, pinned to the registry's revision by a read made here.

        After a disconnect (registry restart, network) it reconnects with
        jittered ``backoff`` (default 0.25 s growing to 10 s) from the last
        revision it delivered + 1, so no event is repeated or skipped. When the
        registry no longer has those events (OUT_OF_RANGE), it yields one
        :class:`~sentinel_registry.Resync` with the matching workers listed
        again and continues after the listing's revision.

        It ends only when closed (``close()``, leaving a ``with`` block, or
        closing the client). ``close()`` may be called from another thread.

        Raises:
            RegistryError: here, if ``start_revision`` is 0 and the registry
                cannot be read; while iterating, for failures a retry cannot
                mend (INVALID_ARGUMENT, UNAUTHENTICATED, PERMISSION_DENIED, ...).
        """
        watch_filter = models.worker_filter(capabilities, health)
        return WorkerWatch(self, watch_filter, start_revision, backoff or Backoff(base_s=0.25, max_s=10.0))

    # -- low level ----------------------------------------------------------------

    def open_heartbeat_stream(self, worker_id: str, requests: Iterator["service_pb2.HeartbeatStreamRequest"]):
        """Opens a HeartbeatStream for ``worker_id`` with no deadline, and returns the grpc call.

        Low level: :class:`~sentinel_registry.WorkerNode` drives it (one reply
        per heartbeat, reconnects, re-registration). Iterate the call for the
        replies; ``cancel()`` it to end it.
        """
        self._check_open("heartbeat_stream")
        return self._stub.HeartbeatStream(requests, metadata=self._metadata("heartbeat_stream", worker_id))

    def close(self) -> None:
        """Closes the channel; running calls and watches end, later calls raise CANCELLED. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            since_connect_s = time.monotonic() - self._connect_requested_at
        if since_connect_s < _CONNECT_THREAD_GRACE_S:
            time.sleep(_CONNECT_THREAD_GRACE_S - since_connect_s)
        self._channel.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> "WorkerRegistryClient":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- internals used by WorkerWatch ---------------------------------------------

    def _open_watch(self, watch_filter, start_revision: int):
        self._check_open("watch_workers")
        request = service_pb2.WatchWorkersRequest(filter=watch_filter, start_revision=start_revision)
        return self._stub.WatchWorkers(request, metadata=self._metadata("watch_workers", None))

    def _list(self, method: str, worker_filter, page_size: Optional[int] = None, pages: Optional[int] = None) -> Tuple[List[Worker], int]:
        """Every matching worker, and the revision of the first page (the listing reflects every change up to it)."""
        workers: List[Worker] = []
        revision: Optional[int] = None
        page_token = ""
        read = 0
        while True:
            page = self._unary(
                method,
                self._stub.DiscoverWorkers,
                service_pb2.DiscoverWorkersRequest(filter=worker_filter, page_size=page_size or self._discover_page_size, page_token=page_token),
                retry_as="discover_workers",
            )
            read += 1
            if revision is None:
                revision = page.revision
            workers.extend(models.to_worker(worker) for worker in page.workers)
            # A server that hands back the token it was given would loop us forever.
            if page.next_page_token and page.next_page_token == page_token:
                raise RegistryError(method, grpc.StatusCode.INTERNAL, f"the registry repeated page token {page_token!r}")
            page_token = page.next_page_token
            if not page_token or (pages is not None and read >= pages):
                return workers, revision

    # -- calls ------------------------------------------------------------------------

    def _unary(self, method: str, rpc, request, worker_id: Optional[str] = None, retry_as: Optional[str] = None):
        attempts = self._retry.max_attempts if (retry_as or method) in _RETRIED else 1
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
            self._connect_now()
            self._retry.sleep(self._retry.backoff.delay_s(attempt))
            self._connect_now()
        raise AssertionError("unreachable")

    def _metadata(self, method: str, worker_id: Optional[str]) -> Optional[List[Tuple[str, str]]]:
        metadata: List[Tuple[str, str]] = []
        if self._call_metadata is not None:
            try:
                metadata = list(self._call_metadata(method) or ())
            except Exception as error:
                raise RegistryError(method, grpc.StatusCode.INTERNAL, f"call_metadata failed: {error}") from error
        token = None
        if worker_id is not None:
            with self._lock:
                token = self._worker_tokens.get(worker_id)
        token = token or self._token
        if token and not any(key.lower() == "authorization" for key, _ in metadata):
            metadata.append(("authorization", f"Bearer {token}"))
        return metadata or None

    def _connect_now(self) -> None:
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

    def _check_open(self, method: str) -> None:
        if self._closed:
            raise RegistryError(method, grpc.StatusCode.CANCELLED, "WorkerRegistryClient is closed")
