"""A synchronous client of sentinel.registry.v1.WorkerRegistryService."""

from __future__ import annotations

from typing import Callable, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

import grpc

from . import models, query
from ._proto import service_pb2
from .backoff import Backoff
from .channel import Metadata, RegistryChannel, RetryPolicy
from .errors import RegistryError
from .lifecycle import LifecycleCalls
from .models import EvictionResumed, RankedWorker, RegistryStats, Worker
from .query import HealthQuery
from .slots import SlotCalls
from .watch import DEFAULT_EVENTS_PER_MESSAGE, WorkerWatch

# Calls that are safe to repeat, retried on UNAVAILABLE: the reads, and
# release_worker, which the contract makes idempotent (a retry whose first
# attempt took effect answers "already-released"). Other writes are not: a
# registration whose reply was lost may have happened, and repeating it would
# replace the worker; a repeated task count would count twice; cordon,
# uncordon and drain are writes too.
_RETRIED = frozenset({"get_worker", "discover_workers", "get_workers_for_load_balancing", "get_registry_stats", "release_worker"})


class WorkerRegistryClient(SlotCalls, LifecycleCalls):
    """A client of the worker registry, with the usage guide's operations in Python naming.

    Beyond the guide: slots (``acquire_worker``, ``release_worker``,
    ``worker()``, from :class:`SlotCalls`), the fleet lifecycle
    (``cordon_worker``, ``uncordon_worker``, ``drain_worker``, from
    :class:`LifecycleCalls`) and a resuming ``watch_workers``.

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
        retry: how the calls that are safe to repeat (get_worker, discover_workers,
            get_workers_for_load_balancing, get_registry_stats, release_worker)
            are retried on UNAVAILABLE (see :class:`RetryPolicy`); None: never.
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
        if not 1 <= discover_page_size <= 10_000:
            raise ValueError(f"discover_page_size must be from 1 to 10000, got {discover_page_size}")
        self.address = address
        self._discover_page_size = discover_page_size
        self._calls = RegistryChannel(
            address, token, root_certificates, private_key, certificate_chain, tls, timeout_s, retry, channel_options, call_metadata
        )
        self._stub = self._calls.stub

    # -- the guide's operations -------------------------------------------------

    def register_worker(
        self,
        node_id: str,
        capabilities: Sequence[str],
        max_concurrent_tasks: int,
        *,
        labels: Optional[Mapping[str, str]] = None,
        version: str = "",
    ) -> Worker:
        """Registers a worker and returns it with its new id. Not retried.

        ``labels`` (Kubernetes' rules for keys and values, selected with
        ``label_selector``) and ``version`` (a build id, selected with
        ``versions``; "" for unversioned) are kept on the worker as given.
        A registration whose node_id already has a worker replaces that worker.
        The worker's own token, if the server issues one, is remembered and sent
        on later calls that name this worker.

        Raises:
            RegistryError: INVALID_ARGUMENT naming the field that breaks its rule.
            TypeError: for a string as ``capabilities`` or labels that are not strings.
        """
        request = service_pb2.RegisterWorkerRequest(
            node_id=node_id,
            capabilities=query.string_list("capabilities", capabilities),
            max_concurrent_tasks=max_concurrent_tasks,
            labels=query.labels(labels),
            version=version,
        )
        response = self._unary("register_worker", self._stub.RegisterWorker, request)
        worker = models.to_worker(response.worker)
        if response.worker_token:
            self._calls.remember_worker_token(worker.id, response.worker_token)
        return worker

    def worker_token(self, worker_id: str) -> Optional[str]:
        """The token the registry issued to a worker this client registered, or None."""
        return self._calls.worker_token(worker_id)

    def unregister_worker(self, worker_id: str) -> None:
        """Removes a worker at once. Not retried.

        Raises:
            RegistryError: NOT_FOUND if no such worker is registered.
        """
        self._unary("unregister_worker", self._stub.UnregisterWorker, service_pb2.UnregisterWorkerRequest(worker_id=worker_id), worker_id)
        self._calls.forget_worker_token(worker_id)

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
        *,
        label_selector: str = "",
        versions: Optional[Iterable[str]] = None,
    ) -> List[Worker]:
        """Every worker that matches (all workers with no arguments), ordered by id, whatever its state.

        A worker must have all of ``capabilities``, be in one of the ``health``
        states (a name or a list of names), have at least
        ``min_available_capacity`` free slots, match ``label_selector``
        (Kubernetes' set-based syntax: ``"zone=eu-1,tier!=spot,gpu in (a100,h100),!preemptible"``)
        and have one of ``versions``. Follows page tokens until the last page;
        each page is retried on UNAVAILABLE.

        Raises:
            RegistryError: INVALID_ARGUMENT for a selector syntax error, naming its position.
        """
        worker_filter = query.worker_filter(capabilities, health, min_available_capacity, label_selector, versions)
        workers, _ = self._list("discover_workers", worker_filter)
        return workers

    def get_workers_for_load_balancing(
        self,
        capabilities: Optional[Iterable[str]] = None,
        health: HealthQuery = None,
        min_available_capacity: int = 0,
        limit: Optional[int] = None,
        *,
        label_selector: str = "",
        versions: Optional[Iterable[str]] = None,
    ) -> List[RankedWorker]:
        """The matching workers in rotation, ranked for load balancing: healthy before degraded, then highest priority first.

        Filters as :meth:`discover_workers` does; cordoned and draining workers
        are never ranked. Without ``health`` the server considers healthy and
        degraded workers. ``limit`` caps the answer (server default 100, at
        most 10000). Retried on UNAVAILABLE.
        """
        worker_filter = query.worker_filter(capabilities, health, min_available_capacity, label_selector, versions)
        response = self._unary(
            "get_workers_for_load_balancing",
            self._stub.GetWorkersForLoadBalancing,
            service_pb2.GetWorkersForLoadBalancingRequest(filter=worker_filter, limit=limit or 0),
        )
        return [models.to_ranked_worker(ranked) for ranked in response.workers]

    def get_registry_stats(self) -> RegistryStats:
        """Counts by health, capacity, completion totals, revision, reservations and eviction status. Retried on UNAVAILABLE."""
        return models.to_registry_stats(self._unary("get_registry_stats", self._stub.GetRegistryStats, service_pb2.GetRegistryStatsRequest()))

    def resume_eviction(self) -> EvictionResumed:
        """Ends a pause of eviction now (needs an admin token when authentication is on). Not retried."""
        return models.to_eviction_resumed(self._unary("resume_eviction", self._stub.ResumeEviction, service_pb2.ResumeEvictionRequest()))

    # -- beyond the guide: watch --------------------------------------------------

    def watch_workers(
        self,
        capabilities: Optional[Iterable[str]] = None,
        health: HealthQuery = None,
        start_revision: int = 0,
        *,
        label_selector: str = "",
        versions: Optional[Iterable[str]] = None,
        backoff: Optional[Backoff] = None,
        events_per_message: int = DEFAULT_EVENTS_PER_MESSAGE,
    ) -> WorkerWatch:
        """Worker events in revision order, as an iterator that resumes by itself.

        Each item is a :class:`~sentinel_registry.WorkerEvent` for a worker
        that has all of ``capabilities``, whose health before or after the
        event is one of ``health`` (any when None), and that matches
        ``label_selector`` and ``versions`` (as in :meth:`discover_workers`).
        ``start_revision`` is the
        first revision to deliver (e.g. ``stats.revision + 1``); 0 means from
        now on, pinned to the registry's revision by a read made here.

        After a disconnect (registry restart, network) it reconnects with
        jittered ``backoff`` (default 0.25 s growing to 10 s) from the last
        revision it delivered + 1, so no event is repeated or skipped. When the
        registry no longer has those events (OUT_OF_RANGE), it yields one
        :class:`~sentinel_registry.Resync` with the matching workers listed
        again and continues after the listing's revision.

        The registry packs up to ``events_per_message`` events (1 to 1000,
        default 256) into one message, which costs it far less than a message
        per event; they are still delivered one at a time. 1 asks for one
        event per message.

        It ends only when closed (``close()``, leaving a ``with`` block, or
        closing the client). ``close()`` may be called from another thread.

        Raises:
            ValueError: for a negative ``start_revision``, or an
                ``events_per_message`` outside 1 to 1000.
            RegistryError: here, if ``start_revision`` is 0 and the registry
                cannot be read; while iterating, for failures a retry cannot
                mend (INVALID_ARGUMENT, UNAUTHENTICATED, PERMISSION_DENIED, ...).
        """
        watch_filter = query.worker_filter(capabilities, health, label_selector=label_selector, versions=versions)
        return WorkerWatch(self, watch_filter, start_revision, backoff or Backoff(base_s=0.25, max_s=10.0), events_per_message)

    # -- low level ----------------------------------------------------------------

    def open_heartbeat_stream(self, worker_id: str, requests: Iterator["service_pb2.HeartbeatStreamRequest"]):
        """Opens a HeartbeatStream for ``worker_id`` with no deadline, and returns the grpc call.

        Low level: :class:`~sentinel_registry.WorkerNode` drives it (one reply
        per heartbeat, reconnects, re-registration). Iterate the call for the
        replies; ``cancel()`` it to end it.
        """
        return self._calls.open_stream("heartbeat_stream", self._stub.HeartbeatStream, requests, worker_id)

    def close(self) -> None:
        """Closes the channel; running calls and watches end, later calls raise CANCELLED. Idempotent."""
        self._calls.close()

    @property
    def closed(self) -> bool:
        return self._calls.closed

    def __enter__(self) -> "WorkerRegistryClient":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- internals shared with WorkerWatch and WorkerNode ------------------------------

    def _open_watch(self, watch_filter, start_revision: int, events_per_message: int):
        request = service_pb2.WatchWorkersRequest(filter=watch_filter, start_revision=start_revision, max_events_per_message=events_per_message)
        return self._calls.open_stream("watch_workers", self._stub.WatchWorkers, request)

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

    def _connect_now(self) -> None:
        """See :meth:`RegistryChannel.connect_now`: used by the watch and WorkerNode before they retry."""
        self._calls.connect_now()

    def _unary(self, method: str, rpc, request, worker_id: Optional[str] = None, retry_as: Optional[str] = None):
        return self._calls.unary(method, rpc, request, worker_id, retried=(retry_as or method) in _RETRIED)
