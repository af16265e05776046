"""Slots: ``acquire_worker``, ``release_worker`` and the ``worker()`` block, mixed into the client."""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Iterable, Iterator, Optional

from . import models, query
from ._proto import service_pb2
from .errors import RegistryError
from .models import Acquisition, ReleaseOutcome
from .query import HealthQuery

log = logging.getLogger("sentinel_registry.client")


class SlotCalls:
    """The slot calls of :class:`~sentinel_registry.WorkerRegistryClient` (uses its ``_unary`` and ``_stub``)."""

    def acquire_worker(
        self,
        capabilities: Optional[Iterable[str]] = None,
        health: HealthQuery = None,
        min_available_capacity: int = 0,
        *,
        label_selector: str = "",
        versions: Optional[Iterable[str]] = None,
    ) -> Acquisition:
        """Takes a slot on the best-ranked matching worker with a free slot, atomically. Not retried.

        Filters as :meth:`discover_workers` does; a cordoned or draining
        worker is never granted. Release it with ``release_worker(acquisition.reservation_id, ...)``
        when the task ends, or use :meth:`worker`, which always does.

        Raises:
            NoWorkerAvailableError: no worker matched, or none had a free slot
                (RESOURCE_EXHAUSTED; the message says which).
            RegistryError: for any other failure.
        """
        response = self._unary(
            "acquire_worker",
            self._stub.AcquireWorker,
            service_pb2.AcquireWorkerRequest(
                filter=query.worker_filter(capabilities, health, min_available_capacity, label_selector, versions)
            ),
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
        *,
        label_selector: str = "",
        versions: Optional[Iterable[str]] = None,
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
        acquired = self.acquire_worker(capabilities, health, min_available_capacity, label_selector=label_selector, versions=versions)
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

