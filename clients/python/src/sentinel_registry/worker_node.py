"""A worker process's link to the registry: registration, the heartbeat stream, task bookkeeping."""

from __future__ import annotations

import logging
import queue
import random as _random
import threading
import time
from typing import Callable, Iterator, Optional, Sequence, TypeVar

import grpc

from ._proto import service_pb2
from .backoff import Backoff, RandomSource
from .client import WorkerRegistryClient
from .errors import RegistryError
from .models import Health, HeartbeatReply, Worker, to_heartbeat_reply

log = logging.getLogger("sentinel_registry.worker_node")

T = TypeVar("T")

DEFAULT_HEARTBEAT_INTERVAL_S = 5 * 60.0
"""Used when the server suggests no interval: the usage guide's five minutes."""

_END = object()


class _Requests:
    """The request side of one heartbeat stream: grpc reads it on its own thread.

    ``close()`` ends the iteration, which half-closes the stream; it must be
    called for every stream, or grpc's reading thread waits here forever.
    """

    def __init__(self) -> None:
        self._queue: "queue.Queue[object]" = queue.Queue()

    def put(self, request: "service_pb2.HeartbeatStreamRequest") -> None:
        self._queue.put(request)

    def close(self) -> None:
        self._queue.put(_END)

    def __iter__(self) -> Iterator["service_pb2.HeartbeatStreamRequest"]:
        while True:
            item = self._queue.get()
            if item is _END:
                return
            yield item  # type: ignore[misc]


def _record_lost(error: RegistryError) -> bool:
    """Whether a failure says the registry no longer has the worker's record.

    NOT_FOUND, or, with authentication on, UNAUTHENTICATED for the worker's own
    token, which dies with its record ("worker ... not found: its token is no
    longer valid").
    """
    return error.code is grpc.StatusCode.NOT_FOUND or (error.code is grpc.StatusCode.UNAUTHENTICATED and "not found" in error.details)


class WorkerNode:
    """Registers a worker, keeps it alive, and keeps its task count right.

    What the usage guide's ``WorkerNode`` does by hand, plus what it leaves
    out. ``start()`` registers and holds one HeartbeatStream on a background
    thread, sending each heartbeat when the server's previous reply says to
    (``next_heartbeat_interval``). When the stream breaks (registry restart,
    network) it reopens it after an exponential backoff with full jitter, so a
    fleet does not return in one burst; when the registry has lost the record
    (NOT_FOUND) it registers again and carries the new id from then on.
    ``run_task()`` counts a task up, and always back down, and records its
    completion with the measured duration. ``stop()`` unregisters.

    Nothing raised on the background thread escapes it: a registry outage is
    logged (logger ``sentinel_registry.worker_node``) and retried, never
    allowed to end the host program. The thread is a daemon thread, so a
    program that forgets ``stop()`` can still exit (the record then expires
    on the registry).

    Usable as a context manager::

        with WorkerNode("localhost:50051", "coder-node-1", ["coder"], 5) as node:
            node.run_task(do_work, item)

    Args:
        address: ``host:port`` of the registry (ignored when ``client`` is given).
        node_id, capabilities, max_concurrent_tasks: what to register, on
            start and again whenever the registry has lost the record.
        token: a ``worker`` role token; after registration the worker's own
            token is used for its heartbeats and updates.
        client: a client to use instead of one of the node's own; the node
            then leaves it open on ``stop()``.
        heartbeat_interval_s: upper bound of the wait between heartbeats;
            default the server's suggestion (or 5 minutes if it makes none).
        reply_timeout_s: how long to wait for a heartbeat's reply before the
            stream counts as dead and is reopened.
        reconnect_base_s, reconnect_max_s: the reconnect backoff's first and
            largest ceiling.
        close_timeout_s: how long ``stop()`` waits for the registry to close
            the half-closed stream before cancelling it.
        random: uniform source in [0, 1) for the jitter.
        clock: monotonic seconds, to measure task durations.
        **client_options: passed to the node's own ``WorkerRegistryClient``
            (``root_certificates``, ``timeout_s``, ``channel_options``, ...).

    Raises:
        ValueError: if a timeout or interval is not positive, or
            reconnect_max_s < reconnect_base_s.
    """

    def __init__(
        self,
        address: str,
        node_id: str,
        capabilities: Sequence[str],
        max_concurrent_tasks: int,
        token: Optional[str] = None,
        *,
        client: Optional[WorkerRegistryClient] = None,
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
        for name, value in (("heartbeat_interval_s", heartbeat_interval_s), ("reply_timeout_s", reply_timeout_s), ("close_timeout_s", close_timeout_s)):
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        self._backoff = Backoff(base_s=reconnect_base_s, max_s=reconnect_max_s, random=random)
        self.node_id = node_id
        self.capabilities = tuple(capabilities)
        self.max_concurrent_tasks = max_concurrent_tasks
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
        self._stop_requested = threading.Event()
        self._connected = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._unregistered = False

    # -- state --------------------------------------------------------------------

    @property
    def worker_id(self) -> Optional[str]:
        """The current worker id: None before ``start()``; changes when the node re-registers."""
        with self._lock:
            return self._id

    @property
    def state(self) -> str:
        """``"idle"``, ``"running"``, ``"stopping"`` or ``"stopped"``. A node runs once."""
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
    def client(self) -> WorkerRegistryClient:
        """The client the node talks through."""
        return self._client

    def wait_connected(self, timeout_s: Optional[float] = None) -> bool:
        """Blocks until a heartbeat stream has answered (or ``timeout_s`` passes); returns whether it has."""
        return self._connected.wait(timeout_s)

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
            worker = self._client.register_worker(self.node_id, self.capabilities, self.max_concurrent_tasks)
            with self._lock:
                self._id = worker.id
                self._state = "running"
            log.info("worker registered: %s (node %s)", worker.id, self.node_id)
            self._thread = threading.Thread(target=self._run, name=f"sentinel-heartbeat-{self.node_id}", daemon=True)
            self._thread.start()
            return worker

    def stop(self) -> bool:
        """Closes the heartbeat stream, unregisters the worker and closes the node's own client.

        The stream is half-closed so that the registry sees a clean goodbye
        (cancelled after ``close_timeout_s``). Idempotent; a call during
        ``start()`` waits for it.

        Returns whether the worker is gone from the registry: True when it was
        unregistered (or the registry had already lost it), False when
        unregistering failed, e.g. during a registry outage. The failure is
        logged, not raised, so that a worker can always shut down; its record
        then expires on the registry's TTL.
        """
        with self._lifecycle:
            with self._lock:
                if self._state in ("stopping", "stopped"):
                    return self._unregistered
                self._state = "stopping"
            self._stop_requested.set()
            thread = self._thread
            if thread is not None:
                # The thread's waits are all bounded: a reply, a registration
                # call (timeout_s), the close timeout.
                thread.join()
            worker_id = self.worker_id
            self._unregistered = True
            if worker_id is not None:
                try:
                    self._client.unregister_worker(worker_id)
                    log.info("worker unregistered: %s", worker_id)
                except RegistryError as error:
                    if not _record_lost(error):
                        self._unregistered = False
                        log.warning(
                            "worker could not be unregistered; its record expires on the registry's TTL: worker %s, %s: %s",
                            worker_id,
                            error.code_name,
                            error.details,
                        )
            if self._owns_client:
                self._client.close()
            with self._lock:
                self._state = "stopped"
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
        Returns ``fn``'s result. If the node re-registered or was stopped
        while the task ran, the bookkeeping after it is skipped: the record it
        would correct is gone.

        Raises:
            RuntimeError: if the node is not running.
            RegistryError: if the count cannot be raised (FAILED_PRECONDITION
                at capacity): ``fn`` is not run and nothing is recorded. Also
                if ``fn`` succeeded but recording or lowering the count failed.
            Whatever ``fn`` raised, unchanged, even when the bookkeeping after it failed too.
        """
        with self._lock:
            worker_id = self._id
            if worker_id is None or self._state != "running":
                raise RuntimeError(f"WorkerNode.run_task() needs a running node, but it is {self._state}")
        self._client.update_task_count(worker_id, 1)
        started = self._clock()
        task_error: Optional[BaseException] = None
        result = None
        try:
            result = fn(*args, **kwargs)
        except BaseException as error:  # noqa: B902 - the count must come down even on KeyboardInterrupt
            task_error = error
        duration_ms = max(0.0, (self._clock() - started) * 1000)
        bookkeeping_errors = []

        def record_still_ours() -> bool:
            with self._lock:
                return self._id == worker_id and self._state == "running"

        for step in (
            lambda: self._client.record_task_completion(worker_id, task_error is None, duration_ms),
            lambda: self._client.update_task_count(worker_id, -1),
        ):
            if not record_still_ours():
                break
            try:
                step()
            except RegistryError as error:
                if record_still_ours():
                    bookkeeping_errors.append(error)
        if task_error is not None:
            raise task_error
        if bookkeeping_errors:
            raise bookkeeping_errors[0]
        return result  # type: ignore[return-value]

    # -- the background thread -------------------------------------------------------------

    def _run(self) -> None:
        """The background thread: hold the stream, and after each failure wait and try again, until stop()."""
        while not self._stop_requested.is_set():
            try:
                error = self._reregister() if self._needs_registration else None
                if error is None:
                    error = self._hold_stream()
                if error is None:
                    return
                self._wait_before_retry(error)
            except Exception:  # noqa: BLE001 - nothing may end the host program
                log.exception("unexpected failure in the heartbeat thread; retrying in %.1fs", self._backoff.max_s)
                self._stop_requested.wait(self._backoff.max_s)

    def _wait_before_retry(self, error: RegistryError) -> None:
        if self._stop_requested.is_set():
            return
        if _record_lost(error):
            self._needs_registration = True
        self._client._connect_now()
        with self._lock:
            attempt = self._failures
            self._failures += 1
            worker_id = self._id
        delay_s = self._backoff.delay_s(attempt)
        log.warning(
            "heartbeat stream lost; reconnecting: worker %s, attempt %d in %.3fs, %s: %s",
            worker_id,
            attempt + 1,
            delay_s,
            error.code_name,
            error.details,
        )
        if not self._stop_requested.wait(delay_s):
            self._client._connect_now()

    def _reregister(self) -> Optional[RegistryError]:
        try:
            worker = self._client.register_worker(self.node_id, self.capabilities, self.max_concurrent_tasks)
        except RegistryError as error:
            return error
        with self._lock:
            previous = self._id
            # Set even when stopping, so that stop() unregisters the new record.
            self._id = worker.id
            self._needs_registration = False
        log.warning("worker re-registered: the registry had lost %s; the worker is now %s", previous, worker.id)
        return None

    def _hold_stream(self) -> Optional[RegistryError]:
        """Holds one stream until it fails (returns why) or the node stops (returns None)."""
        worker_id = self.worker_id or ""
        requests = _Requests()
        try:
            call = self._client.open_heartbeat_stream(worker_id, iter(requests))
        except RegistryError as error:
            requests.close()
            return error
        confirmed = False
        try:
            while True:
                if self._stop_requested.is_set():
                    return self._close_stream(call, requests)
                try:
                    reply = self._beat(call, requests, worker_id)
                except RegistryError as error:
                    return None if self._stop_requested.is_set() else error
                if not confirmed:
                    confirmed = True
                    self._on_connected(worker_id)
                self._on_reply(reply)
                if self._stop_requested.wait(self._next_interval_s(reply)):
                    return self._close_stream(call, requests)
        finally:
            self._connected.clear()
            requests.close()
            call.cancel()

    def _beat(self, call, requests: _Requests, worker_id: str) -> HeartbeatReply:
        """Sends one heartbeat and returns its reply; a missing reply cancels the stream."""
        with self._lock:
            # sequence is a uint32 on the wire.
            self._sequence = (self._sequence + 1) % 2**32
            sequence = self._sequence
        timed_out = threading.Event()

        def give_up() -> None:
            timed_out.set()
            call.cancel()

        timer = threading.Timer(self._reply_timeout_s, give_up)
        timer.daemon = True
        requests.put(service_pb2.HeartbeatStreamRequest(worker_id=worker_id, sequence=sequence))
        timer.start()
        try:
            for message in call:
                # A reply to an earlier heartbeat must not count for this one.
                if message.sequence == sequence:
                    return to_heartbeat_reply(message)
            raise RegistryError("heartbeat_stream", grpc.StatusCode.UNAVAILABLE, "the registry ended the heartbeat stream")
        except grpc.RpcError as rpc_error:
            if timed_out.is_set():
                raise RegistryError(
                    "heartbeat_stream", grpc.StatusCode.DEADLINE_EXCEEDED, f"no heartbeat reply within {self._reply_timeout_s}s"
                ) from rpc_error
            raise RegistryError.from_rpc_error("heartbeat_stream", rpc_error) from rpc_error
        finally:
            timer.cancel()

    def _close_stream(self, call, requests: _Requests) -> None:
        """Half-closes the stream and waits for the registry to end it, cancelling after close_timeout_s."""
        requests.close()
        timer = threading.Timer(self._close_timeout_s, call.cancel)
        timer.daemon = True
        timer.start()
        try:
            for _ in call:
                pass
        except grpc.RpcError:
            pass
        finally:
            timer.cancel()
        return None

    def _on_connected(self, worker_id: str) -> None:
        with self._lock:
            self._failures = 0
            reconnects = self._streams_confirmed
            self._streams_confirmed += 1
        self._connected.set()
        if reconnects > 0:
            log.info("heartbeat stream reconnected: worker %s, reconnect %d", worker_id, reconnects)

    def _on_reply(self, reply: HeartbeatReply) -> None:
        with self._lock:
            previous = self._health
            self._health = reply.health_status
        if previous is not None and previous != reply.health_status:
            log.info("worker health changed: worker %s from %s to %s", reply.worker_id, previous, reply.health_status)

    def _next_interval_s(self, reply: HeartbeatReply) -> float:
        suggested = reply.next_heartbeat_s
        if suggested is None or not suggested > 0:
            return self._heartbeat_interval_s or DEFAULT_HEARTBEAT_INTERVAL_S
        return suggested if self._heartbeat_interval_s is None else min(suggested, self._heartbeat_interval_s)
