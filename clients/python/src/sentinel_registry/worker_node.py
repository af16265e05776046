"""A worker process's link to the registry: registration, the heartbeat stream, task bookkeeping, drains."""

from __future__ import annotations

import logging
import random as _random
import threading
import time
from datetime import datetime
from typing import Callable, Mapping, Optional, Sequence, TypeVar

from . import query
from .backoff import Backoff, RandomSource
from .client import WorkerRegistryClient
from .errors import RegistryError, WorkerDrainingError, record_lost
from .heartbeat_loop import HeartbeatLoop
from .models import Health, Worker
from .node_drain import NodeDrain
from .node_tasks import TaskGate, run_counted

log = logging.getLogger("sentinel_registry.worker_node")

T = TypeVar("T")

DEFAULT_DRAIN_TIMEOUT_S = 30.0
"""How long ``stop()`` waits for running tasks by default."""


class WorkerNode(HeartbeatLoop, NodeDrain):
    """Registers a worker, keeps it alive, keeps its task count right, and honours a drain.

    What the usage guide's ``WorkerNode`` does by hand, plus what it leaves
    out. ``start()`` registers and holds one HeartbeatStream on a background
    thread, sending each heartbeat when the server's previous reply says to
    (``next_heartbeat_interval``). When the stream breaks (registry restart,
    network) it reopens it after an exponential backoff with full jitter, so a
    fleet does not return in one burst; when the registry has lost the record
    (NOT_FOUND: it expired, was replaced or unregistered) it registers again,
    with the same labels and version, and carries the new id from then on.
    ``run_task()`` counts a task up, and always back down, and records its
    completion with the measured duration.

    When the registry wants the worker drained (``drain_worker``), the node
    drains: ``run_task()`` raises :class:`~sentinel_registry.WorkerDrainingError`,
    running tasks finish, then it unregisters (the registry may have removed
    it already), closes the stream and its own client, and calls
    ``on_drained``. It never registers again. It hears of the drain in a
    heartbeat reply or a task's bookkeeping answer, or from the registry's
    NOT_FOUND saying a drain removed the worker (the ``sentinel-removal-reason``
    trailer: ``drained``, or ``drain_deadline`` for a worker still busy at its
    deadline), which ends the heartbeat stream at once, so an idle node
    drained by an operator leaves within moments. ``stop()`` drains too, by
    asking the registry to drain the worker first.

    Nothing raised on the background thread escapes it: a registry outage is
    logged (logger ``sentinel_registry.worker_node``) and retried, never
    allowed to end the host program. The thread is a daemon thread, so a
    program that forgets ``stop()`` can still exit (the record then expires
    on the registry).

    Usable as a context manager::

        with WorkerNode("localhost:50051", "coder-node-1", ["coder"], 5, labels={"zone": "eu-1"}, version="2.1.0") as node:
            node.run_task(do_work, item)

    Args:
        address: ``host:port`` of the registry (ignored when ``client`` is given).
        node_id, capabilities, max_concurrent_tasks, labels, version: what to
            register, on start and again whenever the registry has lost the record.
        token: a ``worker`` role token; after registration the worker's own
            token is used for its heartbeats, updates and its own drain.
        client: a client to use instead of one of the node's own; the node
            then leaves it open when it stops or drains.
        on_drained: called with the worker id, once, when a drain the
            registry asked for is complete (on the heartbeat thread, or on
            the thread of a ``stop()`` that completed it); ``removal_reason``
            then says how it ended. Its exceptions are logged, not raised.
        drain_timeout_s: how long ``stop()`` waits for running tasks before it
            unregisters anyway (30 s).
        heartbeat_interval_s: upper bound of the wait between heartbeats;
            default the server's suggestion (or 5 minutes if it makes none).
        reply_timeout_s: how long to wait for a heartbeat's reply before the
            stream counts as dead and is reopened.
        reconnect_base_s, reconnect_max_s: the reconnect backoff's first and
            largest ceiling.
        close_timeout_s: how long to wait for the registry to close the
            half-closed stream before cancelling it.
        random: uniform source in [0, 1) for the jitter.
        clock: monotonic seconds, to measure task durations.
        **client_options: passed to the node's own ``WorkerRegistryClient``
            (``root_certificates``, ``timeout_s``, ``channel_options``, ...).

    Raises:
        ValueError: if a timeout or interval is not positive, or
            reconnect_max_s < reconnect_base_s.
        TypeError: for a string as ``capabilities`` or labels that are not strings.
    """

    def __init__(
        self,
        address: str,
        node_id: str,
        capabilities: Sequence[str],
        max_concurrent_tasks: int,
        token: Optional[str] = None,
        *,
        labels: Optional[Mapping[str, str]] = None,
        version: str = "",
        client: Optional[WorkerRegistryClient] = None,
        on_drained: Optional[Callable[[str], None]] = None,
        drain_timeout_s: float = DEFAULT_DRAIN_TIMEOUT_S,
        heartbeat_interval_s: Optional[float] = None,
        reply_timeout_s: float = 10.0,
        reconnect_base_s: float = 0.5,
        reconnect_max_s: float = 30.0,
        close_timeout_s: float = 1.0,
        random: RandomSource = _random.random,
        clock: Callable[[], float] = time.monotonic,
        **client_options,
    ) -> None:
        if isinstance(capabilities, str):
            raise TypeError(f"capabilities must be a list of strings, not the string {capabilities!r}")
        for name, value in (
            ("heartbeat_interval_s", heartbeat_interval_s),
            ("reply_timeout_s", reply_timeout_s),
            ("close_timeout_s", close_timeout_s),
            ("drain_timeout_s", drain_timeout_s),
        ):
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        self._backoff = Backoff(base_s=reconnect_base_s, max_s=reconnect_max_s, random=random)
        self.node_id = node_id
        self.capabilities = tuple(capabilities)
        self.max_concurrent_tasks = max_concurrent_tasks
        self.labels = query.labels(labels)
        self.version = version
        self._on_drained = on_drained
        self._drain_timeout_s = drain_timeout_s
        self._heartbeat_interval_s = heartbeat_interval_s
        self._reply_timeout_s = reply_timeout_s
        self._close_timeout_s = close_timeout_s
        self._clock = clock
        if client is not None:
            self._client = client
            self._owns_client = False
        else:
            # The channel's own reconnect backoff must not hold a reconnect back longer than the node intends.
            channel_options = [
                ("grpc.initial_reconnect_backoff_ms", max(1, int(reconnect_base_s * 1000))),
                ("grpc.max_reconnect_backoff_ms", max(1, int(reconnect_max_s * 1000))),
                *client_options.pop("channel_options", ()),
            ]
            self._client = WorkerRegistryClient(address, token, channel_options=channel_options, **client_options)
            self._owns_client = True

        self._lock = threading.RLock()
        self._lifecycle = threading.Lock()
        self._state = "idle"
        self._id: Optional[str] = None
        self._needs_registration = False
        self._sequence = 0
        self._failures = 0
        self._streams_confirmed = 0
        self._health: Optional[Health] = None
        self._connected = threading.Event()
        self._thread: Optional[threading.Thread] = None
        # The heartbeat thread's waits end early when _wake is set: the node
        # is stopping (_stop_requested) or a drain has no task left. Both are for good.
        self._wake = threading.Event()
        self._stop_requested = threading.Event()
        self._tasks = TaskGate(on_drained=self._wake.set)
        self._drain_deadline: Optional[datetime] = None
        self._drain_asked_by_registry = False
        self._record_gone = False
        self._removal_reason: Optional[str] = None
        self._finishing = False
        self._finished_by_thread = False
        self._finished = threading.Event()
        self._drained = threading.Event()
        self._unregistered = False

    # -- state --------------------------------------------------------------------

    @property
    def worker_id(self) -> Optional[str]:
        """The current worker id: None before ``start()``; changes when the node re-registers."""
        with self._lock:
            return self._id

    @property
    def state(self) -> str:
        """``"idle"``, ``"running"``, ``"draining"``, ``"stopping"`` or ``"stopped"``. A node runs once."""
        with self._lock:
            return self._state

    @property
    def health_status(self) -> Optional[Health]:
        """Health in the last heartbeat reply of the open stream; None while no stream is confirmed."""
        with self._lock:
            return self._health if self._connected.is_set() else None

    @property
    def connected(self) -> bool:
        """Whether the open heartbeat stream has answered at least once."""
        return self._connected.is_set()

    @property
    def reconnects(self) -> int:
        """Heartbeat streams confirmed after the first one: how often the node has come back."""
        with self._lock:
            return max(0, self._streams_confirmed - 1)

    @property
    def running_tasks(self) -> int:
        """Tasks ``run_task()`` has admitted and not yet finished."""
        return self._tasks.running

    @property
    def drain_deadline(self) -> Optional[datetime]:
        """While draining: when the registry removes the worker whatever it still runs, if the registry said."""
        with self._lock:
            return self._drain_deadline

    @property
    def drained(self) -> bool:
        """Whether a drain the registry asked for is complete: the node has unregistered and released everything."""
        return self._drained.is_set()

    @property
    def removal_reason(self) -> Optional[str]:
        """How a drain removed the worker, once the node knows: ``"drained"`` or ``"drain_deadline"``.

        ``"drain_deadline"`` when the registry removed the worker at its drain
        deadline with tasks still running (known as soon as the registry says
        so, before those tasks finish); ``"drained"`` when its tasks had
        finished. Set by the time ``on_drained`` is called; None before, and
        for a ``stop()`` unless the registry said it removed the worker.
        """
        with self._lock:
            return self._removal_reason

    @property
    def client(self) -> WorkerRegistryClient:
        """The client the node talks through."""
        return self._client

    def wait_connected(self, timeout_s: Optional[float] = None) -> bool:
        """Blocks until a heartbeat stream has answered (or ``timeout_s`` passes); returns whether it has."""
        return self._connected.wait(timeout_s)

    def wait_drained(self, timeout_s: Optional[float] = None) -> bool:
        """Blocks until a drain the registry asked for is complete (or ``timeout_s`` passes); returns whether it is."""
        return self._drained.wait(timeout_s)

    # -- life cycle -------------------------------------------------------------------

    def start(self) -> Worker:
        """Registers the worker and starts holding the heartbeat stream on a background thread.

        Returns the registered worker. Stream trouble after that is retried,
        never raised.

        Raises:
            RuntimeError: if the node is not idle (a node starts once).
            RegistryError: if the registration fails; the node is idle again
                and ``start()`` may be called again.
        """
        with self._lifecycle:
            with self._lock:
                if self._state != "idle":
                    raise RuntimeError(f"WorkerNode.start() needs an idle node, but it is {self._state}")
            worker = self._register()
            with self._lock:
                self._id = worker.id
                self._state = "running"
            log.info("worker registered: %s (node %s)", worker.id, self.node_id)
            self._thread = threading.Thread(target=self._run, name=f"sentinel-heartbeat-{self.node_id}", daemon=True)
            self._thread.start()
            return worker

    def stop(self, drain_timeout_s: Optional[float] = None) -> bool:
        """Drains the worker, then closes the heartbeat stream, unregisters and closes the node's own client.

        The drain: from now on ``run_task()`` raises
        :class:`~sentinel_registry.WorkerDrainingError`; the node asks the
        registry to drain the worker (so that no orchestrator acquires it
        meanwhile) with the worker's own token, and waits up to
        ``drain_timeout_s`` (default: the node's) for running tasks to
        finish; then it unregisters whatever still runs. The stream is
        half-closed so that the registry sees a clean goodbye (cancelled
        after ``close_timeout_s``). Idempotent; a call during ``start()``
        waits for it.

        Returns whether the worker is gone from the registry: True when it was
        unregistered (or the registry had already removed it), False when
        unregistering failed, e.g. during a registry outage. Failures are
        logged, not raised, so that a worker can always shut down; its record
        then expires on the registry's TTL.
        """
        timeout_s = self._drain_timeout_s if drain_timeout_s is None else drain_timeout_s
        if not timeout_s >= 0:
            raise ValueError(f"drain_timeout_s must be >= 0, got {timeout_s}")
        notify = False
        with self._lifecycle:
            with self._lock:
                state = self._state
                if state == "running":
                    self._state = "draining"
            if state in ("running", "draining"):
                self._tasks.close()
                if state == "running":
                    self._ask_registry_to_drain(timeout_s)
                if not self._tasks.wait_drained(timeout_s):
                    log.warning(
                        "drain timed out; unregistering with tasks still running: worker %s, %d running after %.1fs",
                        self.worker_id,
                        self._tasks.running,
                        timeout_s,
                    )
            if self._claim_finish():
                with self._lock:
                    self._state = "stopping"
                self._stop_requested.set()
                self._wake.set()
                if self._thread is not None:
                    # The thread's waits are all bounded: a reply, a registration
                    # call (timeout_s), the close timeout.
                    self._thread.join()
                self._unregister()
                notify = self._release()
            else:
                self._finished.wait()
        if notify:
            self._notify_drained()
        return self._unregistered

    def __enter__(self) -> "WorkerNode":
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # -- tasks -------------------------------------------------------------------------

    def run_task(self, fn: Callable[..., T], *args, **kwargs) -> T:
        """Runs ``fn(*args, **kwargs)`` with the registry's bookkeeping around it.

        The task count goes up by one before ``fn`` runs; afterwards the
        completion is recorded (success = ``fn`` raised nothing) with the
        measured duration, and the count goes back down whatever happened.
        Returns ``fn``'s result. If the node re-registered or stopped, or the
        registry removed the draining worker, while the task ran, the
        bookkeeping after it is skipped: the record it would correct is gone.

        Raises:
            WorkerDrainingError: if the node is draining or has drained, or the
                registry answers the count with a drain's removal: ``fn`` is
                not run; give the task to another worker.
            RuntimeError: if the node is not running (not started, or stopped).
            RegistryError: if the count cannot be raised (FAILED_PRECONDITION
                at capacity): ``fn`` is not run and nothing is recorded. Also
                if ``fn`` succeeded but recording or lowering the count failed.
            Whatever ``fn`` raised, unchanged, even when the bookkeeping after it failed too.
        """
        with self._lock:
            worker_id, state, asked_by_registry = self._id, self._state, self._drain_asked_by_registry
        if state == "draining" or (asked_by_registry and state in ("stopping", "stopped")):
            raise WorkerDrainingError(worker_id, self.drain_deadline, drained=state != "draining")
        if worker_id is None or state != "running":
            raise RuntimeError(f"WorkerNode.run_task() needs a running node, but it is {state}")
        if not self._tasks.enter():
            raise WorkerDrainingError(worker_id, self.drain_deadline)

        def record_still_ours() -> bool:
            with self._lock:
                return self._id == worker_id and self._state in ("running", "draining") and not self._record_gone

        def record_removed(error: RegistryError) -> bool:
            # A drain may remove the worker while its task runs (at its deadline, or as
            # the registry answers this task's last step); a registry that does not say
            # why can only have removed a draining one.
            return self._removed_by_drain(error, worker_id) or (self._tasks.closed and record_lost(error))

        def refused(error: RegistryError) -> BaseException:
            return self._task_refused(worker_id, error)

        try:
            return run_counted(
                self._client, worker_id, fn, args, kwargs, self._clock, record_still_ours, record_removed, self._observe, refused=refused
            )
        finally:
            # Last, so that a drain waiting for this task sees its bookkeeping done.
            self._tasks.leave()

    # -- registration ------------------------------------------------------------------------

    def _register(self) -> Worker:
        return self._client.register_worker(self.node_id, self.capabilities, self.max_concurrent_tasks, labels=self.labels, version=self.version)
