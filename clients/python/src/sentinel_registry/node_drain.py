"""How a WorkerNode drains and leaves: the registry's drain request, and the end of the node."""

from __future__ import annotations

import logging
import math
from datetime import datetime
from typing import Optional

import grpc

from .errors import RegistryError, record_lost
from .models import Worker

# The node's logger: one place for a host to watch a worker's link.
log = logging.getLogger("sentinel_registry.worker_node")


class NodeDrain:
    """The drain half of :class:`~sentinel_registry.WorkerNode`.

    Mixed into the node, whose fields it shares (``_lock``, ``_state``,
    ``_id``, ``_tasks``, ``_client``, ...): hearing of the registry's drain
    request, asking the registry to drain for ``stop()``, and the end of the
    node (unregister, release, report the drain).
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

    def _observe(self, worker: Worker) -> None:
        """The worker as a task's bookkeeping call answered it: a drain is heard of here too.

        Heartbeat replies come every few minutes by default; a task that ends
        sooner would otherwise take the worker's count to zero, the registry
        would remove it, and the node would take the NOT_FOUND for a lost
        record and register again.
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
        worker_id = self.worker_id
        self._unregistered = True
        if worker_id is None:
            return
        try:
            self._client.unregister_worker(worker_id)
            log.info("worker unregistered: %s", worker_id)
        except RegistryError as error:
            if record_lost(error):
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
        self._finished.set()
        return drained

    def _notify_drained(self) -> None:
        """Calls on_drained, then releases wait_drained(): a host that waits sees its callback's work done."""
        worker_id = self.worker_id
        log.info("worker drained: %s", worker_id)
        try:
            if self._on_drained is not None:
                self._on_drained(worker_id or "")
        except Exception:  # noqa: BLE001 - a host's callback must not break the node
            log.exception("on_drained raised: worker %s", worker_id)
        finally:
            self._drained.set()
