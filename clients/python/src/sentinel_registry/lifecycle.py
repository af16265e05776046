"""Fleet lifecycle: ``cordon_worker``, ``uncordon_worker`` and ``drain_worker``, mixed into the client."""

from __future__ import annotations

from . import models, query
from ._proto import service_pb2
from .models import Worker
from .query import Grace


class LifecycleCalls:
    """The lifecycle calls of :class:`~sentinel_registry.WorkerRegistryClient` (uses its ``_unary`` and ``_stub``).

    None is retried: a write whose reply was lost may have happened. Each
    answers the worker after the call.
    """

    def cordon_worker(self, worker_id: str) -> Worker:
        """Takes a worker out of rotation until :meth:`uncordon_worker`: it is no longer ranked nor acquired.

        It keeps heartbeating, its health, and its running tasks and
        reservations. Cordoning a cordoned worker changes nothing. Needs an
        orchestrator or admin token when authentication is on.

        Raises:
            RegistryError: NOT_FOUND for an unknown worker; FAILED_PRECONDITION
                for a draining one (a drain is not undone); PERMISSION_DENIED
                for a worker token.
        """
        response = self._unary("cordon_worker", self._stub.CordonWorker, service_pb2.CordonWorkerRequest(worker_id=worker_id))
        return models.to_worker(response.worker)

    def uncordon_worker(self, worker_id: str) -> Worker:
        """Puts a cordoned worker back in rotation. Needs an orchestrator or admin token when authentication is on.

        Raises:
            RegistryError: NOT_FOUND for an unknown worker; FAILED_PRECONDITION
                for a draining one (only its re-registration undoes a drain);
                PERMISSION_DENIED for a worker token.
        """
        response = self._unary("uncordon_worker", self._stub.UncordonWorker, service_pb2.UncordonWorkerRequest(worker_id=worker_id))
        return models.to_worker(response.worker)

    def drain_worker(self, worker_id: str, grace: Grace = None) -> Worker:
        """Takes a worker out of rotation for good; the registry removes it once its tasks and reservations reach zero.

        Its heartbeat replies say ``drain_requested``, so a
        :class:`~sentinel_registry.WorkerNode` takes no new task, finishes the
        running ones and leaves. A worker still busy after ``grace`` (a
        ``timedelta`` or seconds, 1 s to 7 days; None: the registry's 10
        minutes) is removed anyway, reason ``drain_deadline``; otherwise the
        reason is ``drained``. Draining again keeps the sooner deadline.

        Orchestrator and admin tokens may drain any worker; a worker's own
        token only itself. A worker this client registered is drained with
        its own token.

        Raises:
            RegistryError: NOT_FOUND for an unknown worker; INVALID_ARGUMENT
                for a grace outside 1 s to 7 days; PERMISSION_DENIED for
                another worker's token or the worker role token.
            TypeError, ValueError: for a grace that is not a finite duration, before any call.
        """
        request = service_pb2.DrainWorkerRequest(worker_id=worker_id, grace=query.grace_duration(grace))
        response = self._unary("drain_worker", self._stub.DrainWorker, request, worker_id)
        return models.to_worker(response.worker)
