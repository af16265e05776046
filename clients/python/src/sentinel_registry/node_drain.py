"""How a WorkerNode drains and leaves: the registry's drain request, a drain's removal, and the end of the node."""

from __future__ import annotations

import logging
import math
from datetime import datetime
from typing import Optional

import grpc

from .errors import RegistryError, WorkerDrainingError, drain_removal, record_lost
from .models import Worker

# The node's logger: one place for a host to watch a worker's link.
log = logging.getLogger("sentinel_registry.worker_node")


class NodeDrain:
    """The drain half of :class:`~sentinel_registry.WorkerNode`.

    Mixed into the node, whose fields it shares (``_lock``, ``_state``,
    ``_id``, ``_tasks``, ``_client``, ...). A drain is heard of in three ways:
    a heartbeat reply or a task's bookkeeping answer saying ``draining``
    (:meth:`_begin_registry_drain`), or a failure saying that a drain has
    removed the worker already (:meth:`_removed_by_drain`): the end of its
    heartbeat stream, a heartbeat, a task's bookkeeping. Either way the node
    refuses new tasks, lets the running ones finish, and never registers again.
    """

    def _begin_registry_drain(self, deadline: Optional[datetime]) -> None:
        """The registry says the worker is draining: refuse new tasks from now on, and finish once none runs."""
        with self._lock:
            if deadline is not None:
                self._drain_deadline = deadline
            if self._state != "running":
                return
            self._state = "draining"
            self._drain_asked_by_registry = True
            worker_id = self._id
        log.info(
            "worker draining: worker %s, deadline %s, %d tasks running",
            worker_id,
            deadline.isoformat() if deadline else "none",
            self._tasks.running,
        )
        self._tasks.close()

    def _removed_by_drain(self, error: RegistryError, worker_id: Optional[str]) -> bool:
        """Whether ``error`` says a drain removed the worker (reason ``drained`` or ``drain_deadline``).

        If it does, and ``worker_id`` is still the node's worker, the node
        drains as if told in a heartbeat reply, knowing its record is gone: no
        re-registration, no more heartbeats nor bookkeeping; running tasks
        finish, then the node leaves. Safe on any thread, grpc's included: it
        never blocks.
        """
        reason = drain_removal(error)
        if reason is None:
            return False
        with self._lock:
            if worker_id is None or worker_id != self._id:
                return True  # an earlier record's: the node has moved on
            first = self._removal_reason is None
            if first:
                self._removal_reason = reason
            self._record_gone = True
        if first:
            log.info(
                "the registry removed the worker after a drain (%s): worker %s, %d tasks still running",
                reason,
                worker_id,
                self._tasks.running,
            )
        self._begin_registry_drain(None)
        return True

    def _task_refused(self, worker_id: str, error: RegistryError) -> BaseException:
        """What ``run_task`` raises when a task's count could not be raised: a drain's removal refuses it as a drain does."""
        if not self._removed_by_drain(error, worker_id):
            return error
        refusal = WorkerDrainingError(worker_id, self.drain_deadline, drained=True)
        refusal.__cause__ = error
        return refusal

    def _observe(self, worker: Worker) -> None:
        """The worker as a task's bookkeeping call answered it: a drain is heard of here too.

        Heartbeat replies come every few minutes by default; a task that ends
        sooner would otherwise take the worker's count to zero, the registry
        would remove it, and the node would learn of it only from a NOT_FOUND.
        """
        if worker.state == "draining":
            self._begin_registry_drain(worker.drain_deadline)

    def _ask_registry_to_drain(self, timeout_s: float) -> None:
        """DrainWorker on the node's own worker, so that it leaves rotation while its tasks finish."""
        worker_id = self.worker_id
        if worker_id is None:
            return
        # The registry's grace is 1 s to 7 days, in whole or fractional seconds; the
        # node unregisters after timeout_s anyway.
        grace_s = min(7 * 24 * 3600, max(1, math.ceil(timeout_s)))
        try:
            worker = self._client.drain_worker(worker_id, grace=grace_s)
        except RegistryError as error:
            # A registry older than drains (UNIMPLEMENTED) is no trouble: the node still
            # refuses new tasks and waits for the running ones.
            log.log(
                logging.INFO if error.code is grpc.StatusCode.UNIMPLEMENTED else logging.WARNING,
                "could not ask the registry to drain the worker; finishing its tasks regardless: worker %s, %s: %s",
                worker_id,
                error.code_name,
                error.details,
            )
            return
        with self._lock:
            self._drain_deadline = worker.drain_deadline

    def _claim_finish(self) -> bool:
        """Whether the caller is the one to finish the node (stop() or the heartbeat thread after a drain)."""
        with self._lock:
            if self._finishing:
                return False
            self._finishing = True
            return True

    def _unregister(self) -> None:
        with self._lock:
            worker_id, removal_reason = self._id, self._removal_reason if self._record_gone else None
        self._unregistered = True
        if worker_id is None:
            return
        if removal_reason is not None:
            log.info("worker unregistered: %s (the registry had removed it: %s)", worker_id, removal_reason)
            return
        try:
            self._client.unregister_worker(worker_id)
            log.info("worker unregistered: %s", worker_id)
        except RegistryError as error:
            if record_lost(error):
                with self._lock:
                    self._removal_reason = self._removal_reason or drain_removal(error)
                log.info("worker unregistered: %s (the registry had removed it)", worker_id)
                return
            self._unregistered = False
            log.warning(
                "worker could not be unregistered; its record expires on the registry's TTL: worker %s, %s: %s",
                worker_id,
                error.code_name,
                error.details,
            )

    def _release(self) -> bool:
        """Closes the node's own client and marks it stopped; returns whether the drain is to be reported."""
        if self._owns_client:
            self._client.close()
        with self._lock:
            self._state = "stopped"
            drained = self._drain_asked_by_registry
            if drained and self._removal_reason is None:
                # The node unregistered the drained worker itself: its tasks finished.
                self._removal_reason = "drained"
        self._finished.set()
        return drained

    def _notify_drained(self) -> None:
        """Calls on_drained, then releases wait_drained(): a host that waits sees its callback's work done."""
        with self._lock:
            worker_id, reason = self._id, self._removal_reason
        log.info("worker drained: %s (%s)", worker_id, reason)
        try:
            if self._on_drained is not None:
                self._on_drained(worker_id or "")
        except Exception:  # noqa: BLE001 - a host's callback must not break the node
            log.exception("on_drained raised: worker %s", worker_id)
        finally:
            self._drained.set()
