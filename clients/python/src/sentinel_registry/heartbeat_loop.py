"""The background thread of a WorkerNode: the heartbeat stream, reconnects, re-registration, the registry's drain request."""

from __future__ import annotations

import logging
from typing import Optional

from .errors import RegistryError, record_lost
from .heartbeat_stream import HeartbeatStream
from .models import HeartbeatReply

# The node's logger: one place for a host to watch a worker's link.
log = logging.getLogger("sentinel_registry.worker_node")

DEFAULT_HEARTBEAT_INTERVAL_S = 5 * 60.0
"""Used when the server suggests no interval: the usage guide's five minutes."""


class HeartbeatLoop:
    """The heartbeat thread's half of :class:`~sentinel_registry.WorkerNode`.

    Mixed into the node, whose fields it shares (``_lock``, ``_wake``,
    ``_stop_requested``, ``_tasks``, ...) and whose steps it calls
    (``_register``, ``_begin_registry_drain``, ``_removed_by_drain``,
    ``_claim_finish``, ``_unregister``, ``_release``, ``_notify_drained``).
    The thread runs ``_run`` until the node stops, or until a drain has no
    task left, which the thread then finishes itself.
    """

    def _run(self) -> None:
        """The background thread: hold the stream, and after each failure wait and try again, until stopped or drained."""
        while not self._stop_requested.is_set():
            try:
                if self._wake.is_set():
                    self._leave_after_drain()
                    continue
                if self._tasks.closed and (self._record_gone or self._needs_registration):
                    # Draining without a record: no heartbeat to send; wait for the tasks.
                    self._record_gone = True
                    self._wake.wait()
                    continue
                error = self._reregister() if self._needs_registration else None
                if error is None:
                    error = self._hold_stream()
                if error is not None:
                    self._wait_before_retry(error)
            except Exception:  # noqa: BLE001 - nothing may end the host program
                log.exception("unexpected failure in the heartbeat thread; retrying in %.1fs", self._backoff.max_s)
                self._wake.wait(self._backoff.max_s)
        if self._finished_by_thread and self._release():
            self._notify_drained()

    def _wait_before_retry(self, error: RegistryError) -> None:
        # A drain removed the worker (the stream's end may have said so already): never register again.
        if self._removed_by_drain(error, self.worker_id) or self._wake.is_set():
            return
        if record_lost(error):
            if self._tasks.closed:
                self._record_gone = True
                log.info("the registry removed the draining worker: worker %s, %d tasks still running", self.worker_id, self._tasks.running)
                return
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
        if not self._wake.wait(delay_s):
            self._client._connect_now()

    def _reregister(self) -> Optional[RegistryError]:
        try:
            worker = self._register()
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
        """Holds one stream until it fails (returns why), or the node stops or its drain is done (returns None)."""
        worker_id = self.worker_id or ""
        try:
            # The registry ends a drained worker's stream at once: heard between heartbeats too.
            stream = HeartbeatStream(
                self._client, worker_id, self._reply_timeout_s, self._close_timeout_s, on_end=lambda error: self._removed_by_drain(error, worker_id)
            )
        except RegistryError as error:
            return error
        confirmed = False
        try:
            while not self._wake.is_set():
                try:
                    reply = stream.beat(self._next_sequence())
                except RegistryError as error:
                    return None if self._wake.is_set() else error
                if not confirmed:
                    confirmed = True
                    self._on_connected(worker_id)
                self._on_reply(reply)
                self._wake.wait(self._next_interval_s(reply))
            if not self._stop_requested.is_set():
                # The drain has no task left: unregister first, then say goodbye on the stream.
                self._leave_after_drain()
            stream.close()
            return None
        finally:
            self._connected.clear()
            stream.release()

    def _next_sequence(self) -> int:
        with self._lock:
            # sequence is a uint32 on the wire.
            self._sequence = (self._sequence + 1) % 2**32
            return self._sequence

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
        if reply.drain_requested:
            self._begin_registry_drain(reply.drain_deadline)

    def _next_interval_s(self, reply: HeartbeatReply) -> float:
        suggested = reply.next_heartbeat_s
        if suggested is None or not suggested > 0:
            return self._heartbeat_interval_s or DEFAULT_HEARTBEAT_INTERVAL_S
        return suggested if self._heartbeat_interval_s is None else min(suggested, self._heartbeat_interval_s)

    def _leave_after_drain(self) -> None:
        """Once a drain has no task left: unregister if the registry asked for the drain, and end the thread.

        A drain that ``stop()`` started is stop()'s to finish: the thread
        only waits for it to say so.
        """
        with self._lock:
            asked_by_registry = self._drain_asked_by_registry
        if asked_by_registry and self._claim_finish():
            self._finished_by_thread = True
            with self._lock:
                self._state = "stopping"
            self._unregister()
        else:
            self._stop_requested.wait()  # stop() finishes; it sets this before anything that waits for the thread
        self._stop_requested.set()

