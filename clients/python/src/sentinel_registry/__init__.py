"""A Python client of the worker registry (sentinel.registry.v1).

- :class:`WorkerRegistryClient`: every RPC, with the usage guide's operations
  in Python naming, slots (``acquire_worker``/``release_worker``/``worker()``),
  the fleet lifecycle (``cordon_worker``/``uncordon_worker``/``drain_worker``,
  label selectors and versions in every filter) and a resuming
  ``watch_workers`` iterator.
- :class:`WorkerNode`: registers a worker, holds its heartbeat stream on a
  background thread through registry restarts, keeps its task count right,
  and honours a drain.

Supported: Python 3.11 with Debian 12's python3-grpcio (1.51) and
python3-protobuf (3.21); install by putting ``clients/python/src`` on PYTHONPATH.
"""

import logging

from .backoff import Backoff
from .channel import RetryPolicy
from .client import WorkerRegistryClient
from .errors import NoWorkerAvailableError, RegistryError, WorkerDrainingError
from .models import (
    HEALTH_STATES,
    WORKER_STATES,
    Acquisition,
    EventType,
    EvictionResumed,
    EvictionStatus,
    Health,
    Labels,
    RankedWorker,
    RegistryStats,
    ReleaseOutcome,
    RemovalReason,
    Resync,
    WatchItem,
    Worker,
    WorkerEvent,
    WorkerMetrics,
    WorkerState,
)
from .watch import WorkerWatch
from .worker_node import WorkerNode

# A library logs, the application decides where it goes (reconnects and
# re-registrations are warnings on "sentinel_registry.worker_node" and
# "sentinel_registry.watch").
logging.getLogger("sentinel_registry").addHandler(logging.NullHandler())

__all__ = [
    "Acquisition",
    "Backoff",
    "EventType",
    "EvictionResumed",
    "EvictionStatus",
    "HEALTH_STATES",
    "Health",
    "Labels",
    "NoWorkerAvailableError",
    "RankedWorker",
    "RegistryError",
    "RegistryStats",
    "ReleaseOutcome",
    "RemovalReason",
    "Resync",
    "RetryPolicy",
    "WatchItem",
    "WORKER_STATES",
    "Worker",
    "WorkerDrainingError",
    "WorkerEvent",
    "WorkerMetrics",
    "WorkerNode",
    "WorkerRegistryClient",
    "WorkerState",
    "WorkerWatch",
]
