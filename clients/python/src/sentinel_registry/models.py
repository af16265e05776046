"""Result types, and the one place that translates protobuf messages into them.

Results are frozen dataclasses with snake_case fields, named as the usage
guide names them (``worker.node_id``, ``worker.metrics.tasks_completed``,
``best.priority``). Health is a string: ``"healthy"``, ``"degraded"`` or
``"unhealthy"``. Timestamps are timezone-aware ``datetime`` objects in UTC.

When the contract grows (new fields, new enum values), this module is where
the client learns about them; :mod:`.query` builds the requests. Enum values
it does not know yet are mapped to safe readings: an unknown health reads as
``"unhealthy"`` (a worker whose health cannot be told must not be picked), an
unknown event type, release outcome or worker state as ``"unknown"`` (never
``"active"``: a worker whose state cannot be told is not in rotation).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterator, Literal, Mapping, Optional, Tuple, Union

from ._proto import service_pb2, worker_pb2

Health = Literal["healthy", "degraded", "unhealthy"]
"""A worker's health, derived by the server from the age of its last heartbeat."""

HEALTH_STATES: Tuple[Health, ...] = ("healthy", "degraded", "unhealthy")
"""Every health state, from best to worst."""

ReleaseOutcome = Literal["released", "already-released", "expired", "unknown"]
"""What ``release_worker`` did: freed the slot and recorded the outcome
(``released``); nothing, because the reservation was released before
(``already-released``); recorded the outcome of a reservation whose slot had
already expired (``expired``); or something this client version does not
know yet (``unknown``)."""

WorkerState = Literal["active", "cordoned", "draining", "unknown"]
"""Whether a worker is in rotation (ranked by load balancing, granted by acquire_worker): ``active``;
out of it until uncordoned: ``cordoned``; out of it for good, removed once idle or at its drain
deadline: ``draining``; or a state this client version does not know yet: ``unknown``."""

WORKER_STATES: Tuple[WorkerState, ...] = ("active", "cordoned", "draining")
"""Every worker state the contract defines."""

EventType = Literal["registered", "updated", "health_changed", "state_changed", "unregistered", "removed_by_cleanup", "unknown"]
"""What happened to a worker. ``updated`` covers task counts, metrics and reservations;
``state_changed`` a cordon, an uncordon or the start of a drain."""

RemovalReason = Literal["unregistered", "expired", "replaced", "drained", "drain_deadline", "unknown"]
"""Why a worker left: UnregisterWorker, cleanup after its TTL, a new registration of its node_id,
a drain whose tasks and reservations reached zero, or a drain still busy at its deadline."""

_EPOCH = datetime.fromtimestamp(0, tz=timezone.utc)

_HEALTH_NAMES: Mapping[int, Health] = {
    worker_pb2.HEALTH_STATUS_HEALTHY: "healthy",
    worker_pb2.HEALTH_STATUS_DEGRADED: "degraded",
    worker_pb2.HEALTH_STATUS_UNHEALTHY: "unhealthy",
}

_WORKER_STATES: Mapping[int, WorkerState] = {
    # A registry older than worker states sends none: every worker it has is in rotation.
    worker_pb2.WORKER_STATE_UNSPECIFIED: "active",
    worker_pb2.WORKER_STATE_ACTIVE: "active",
    worker_pb2.WORKER_STATE_CORDONED: "cordoned",
    worker_pb2.WORKER_STATE_DRAINING: "draining",
}

_RELEASE_OUTCOMES: Mapping[int, ReleaseOutcome] = {
    service_pb2.RELEASE_OUTCOME_RELEASED: "released",
    service_pb2.RELEASE_OUTCOME_ALREADY_RELEASED: "already-released",
    service_pb2.RELEASE_OUTCOME_EXPIRED: "expired",
}

_EVENT_TYPES: Mapping[int, EventType] = {
    service_pb2.WORKER_EVENT_TYPE_REGISTERED: "registered",
    service_pb2.WORKER_EVENT_TYPE_UPDATED: "updated",
    service_pb2.WORKER_EVENT_TYPE_HEALTH_CHANGED: "health_changed",
    service_pb2.WORKER_EVENT_TYPE_STATE_CHANGED: "state_changed",
    service_pb2.WORKER_EVENT_TYPE_UNREGISTERED: "unregistered",
    service_pb2.WORKER_EVENT_TYPE_REMOVED_BY_CLEANUP: "removed_by_cleanup",
}

_REMOVAL_REASONS: Mapping[int, RemovalReason] = {
    service_pb2.REMOVAL_REASON_UNREGISTERED: "unregistered",
    service_pb2.REMOVAL_REASON_EXPIRED: "expired",
    service_pb2.REMOVAL_REASON_REPLACED: "replaced",
    service_pb2.REMOVAL_REASON_DRAINED: "drained",
    service_pb2.REMOVAL_REASON_DRAIN_DEADLINE: "drain_deadline",
}


class Labels(Mapping[str, str]):
    """A worker's labels: a read-only mapping that compares equal to a dict with the same items.

    Read-only and hashable, so that a :class:`Worker` stays a hashable value.
    """

    __slots__ = ("_items",)

    def __init__(self, items: Optional[Mapping[str, str]] = None) -> None:
        self._items = dict(items or {})

    def __getitem__(self, key: str) -> str:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(frozenset(self._items.items()))

    def __repr__(self) -> str:
        return f"Labels({self._items!r})"


@dataclass(frozen=True)
class WorkerMetrics:
    """Completion figures recorded with ``record_task_completion``."""

    tasks_completed: int
    """Tasks that completed successfully."""
    tasks_failed_count: int
    """Tasks that completed with a failure."""
    average_task_duration_ms: float
    """Mean duration of every recorded completion, in milliseconds; 0 before the first."""


@dataclass(frozen=True)
class Worker:
    """One registered worker, as the registry saw it when it answered."""

    id: str
    """Assigned at registration: ``worker-<unix ms>-<random>``."""
    node_id: str
    capabilities: Tuple[str, ...]
    """In the order given at registration."""
    health_status: Health
    current_tasks: int
    max_concurrent_tasks: int
    available_capacity: int
    """``max_concurrent_tasks - current_tasks``."""
    success_rate: float
    """completed / (completed + failed): the observed rate, 0 before any completion."""
    registered_at: datetime
    last_heartbeat_at: datetime
    metrics: WorkerMetrics
    labels: Labels
    """As given at registration; compares equal to a plain dict."""
    version: str
    """As given at registration; "" when unversioned."""
    state: WorkerState
    """In rotation (``active``), ``cordoned`` or ``draining``."""
    drain_deadline: Optional[datetime]
    """While draining: when the registry removes the worker whatever it still runs; otherwise None."""


@dataclass(frozen=True)
class RankedWorker(Worker):
    """A worker with its load-balancing score and the parts it is made of."""

    priority: float
    """0.5 x capacity_score + 0.3 x success_score + 0.2 x speed_score with the default weights."""
    capacity_score: float
    """Available slots / max slots."""
    success_score: float
    """The success rate, or the neutral prior before the first completion."""
    speed_score: float
    """min(1, 1000 ms / average duration), or the neutral prior before the first completion."""


@dataclass(frozen=True)
class Acquisition:
    """A slot taken by ``acquire_worker``: pass ``reservation_id`` to ``release_worker``."""

    worker: RankedWorker
    """The worker, with the slot already counted in ``current_tasks``."""
    priority: float
    reservation_id: str
    expires_at: datetime
    """When the registry takes the slot back if it has not been released."""


@dataclass(frozen=True)
class EvictionStatus:
    """Whether the registry's cleanup is holding evictions back, and why."""

    paused: bool
    reason: str
    """Why, in words; "" when not paused."""
    paused_since: Optional[datetime]
    resumes_at: Optional[datetime]
    """When the pause ends by itself if nothing changes; None when not paused."""
    pauses_total: int
    """Pauses since the server started."""
    last_window_intake: int
    """Distinct workers heard from in the last complete intake window."""
    expected_intake: int
    """The level the collapse rule compares ``last_window_intake`` with."""


@dataclass(frozen=True)
class RegistryStats:
    """The fleet summarised for a dashboard: every field GetRegistryStats sends."""

    total_workers: int
    healthy_workers: int
    degraded_workers: int
    unhealthy_workers: int
    cordoned_workers: int
    """Out of rotation until uncordoned; counted in ``total_workers`` and by health as well."""
    draining_workers: int
    """Out of rotation until removed; counted in ``total_workers`` and by health as well."""
    total_capacity: int
    """Sum of max_concurrent_tasks."""
    used_capacity: int
    """Sum of current_tasks."""
    available_capacity: int
    tasks_completed: int
    tasks_failed: int
    success_rate: float
    """completed / (completed + failed); 0 before any completion."""
    server_time: datetime
    revision: int
    """The revision of the last change: watch from ``revision + 1`` to see every later one."""
    active_reservations: int
    """Slots currently held by ``acquire_worker`` reservations."""
    eviction: EvictionStatus


@dataclass(frozen=True)
class EvictionResumed:
    """The answer of ``resume_eviction``."""

    was_paused: bool
    eviction: EvictionStatus
    """The status after the call."""


@dataclass(frozen=True)
class WorkerEvent:
    """One change to a worker, numbered by the registry-wide revision."""

    type: EventType
    revision: int
    worker: Worker
    """The worker as it was right after the event."""
    occurred_at: datetime
    previous_health: Optional[Health]
    """For ``health_changed``: the health before; otherwise None."""
    removal_reason: Optional[RemovalReason]
    """For ``unregistered`` and ``removed_by_cleanup``, when the server says; otherwise None."""
    previous_state: Optional[WorkerState] = None
    """For ``state_changed``: the state before; otherwise None."""


@dataclass(frozen=True)
class Resync:
    """The watch fell behind the registry's event log: here is the whole picture again.

    ``workers`` are every worker matching the watch's filter, listed with
    DiscoverWorkers at ``revision``; the watch continues with the events
    after it. Replace what you built from earlier events with this list.
    """

    revision: int
    workers: Tuple[Worker, ...]
    type: Literal["resync"] = "resync"


WatchItem = Union[WorkerEvent, Resync]
"""What ``watch_workers`` yields."""


@dataclass(frozen=True)
class HeartbeatReply:
    """One answer on the heartbeat stream."""

    worker_id: str
    sequence: int
    health_status: Health
    server_time: datetime
    next_heartbeat_s: Optional[float]
    """The interval the server suggests before the next heartbeat, in seconds; None if it suggests none."""
    drain_requested: bool = False
    """The worker is draining: take no new task, finish the running ones, expect removal."""
    drain_deadline: Optional[datetime] = None
    """While draining: when the registry removes the worker whatever it still runs."""


def health_name(value: int) -> Health:
    """The name of a protobuf HealthStatus; a value this client does not know reads as ``"unhealthy"``."""
    return _HEALTH_NAMES.get(value, "unhealthy")


def state_name(value: int) -> WorkerState:
    """The name of a protobuf WorkerState; unset reads as ``"active"``, a value this client does not know as ``"unknown"``."""
    return _WORKER_STATES.get(value, "unknown")


def to_worker(message: "worker_pb2.Worker") -> Worker:
    """Maps a protobuf Worker. A missing timestamp reads as the Unix epoch, missing metrics as zeros."""
    return Worker(**_worker_fields(message))


def to_ranked_worker(message: "worker_pb2.RankedWorker") -> RankedWorker:
    """Maps a protobuf RankedWorker: the worker's fields plus its scores."""
    return RankedWorker(
        **_worker_fields(message.worker),
        priority=message.priority,
        capacity_score=message.capacity_score,
        success_score=message.success_score,
        speed_score=message.speed_score,
    )


def to_acquisition(message: "service_pb2.AcquireWorkerResponse") -> Acquisition:
    worker = to_ranked_worker(message.worker)
    return Acquisition(
        worker=worker,
        priority=worker.priority,
        reservation_id=message.reservation_id,
        expires_at=_datetime(message, "expires_at") or _EPOCH,
    )


def to_release_outcome(value: int) -> ReleaseOutcome:
    return _RELEASE_OUTCOMES.get(value, "unknown")


def to_eviction_status(message: "service_pb2.EvictionStatus") -> EvictionStatus:
    """Maps an EvictionStatus (an absent one reads as "not paused", all zeros)."""
    return EvictionStatus(
        paused=message.paused,
        reason=message.reason,
        paused_since=_datetime(message, "paused_since"),
        resumes_at=_datetime(message, "resumes_at"),
        pauses_total=message.pauses_total,
        last_window_intake=message.last_window_intake,
        expected_intake=message.expected_intake,
    )


def to_registry_stats(message: "service_pb2.GetRegistryStatsResponse") -> RegistryStats:
    return RegistryStats(
        total_workers=message.total_workers,
        healthy_workers=message.healthy_workers,
        degraded_workers=message.degraded_workers,
        unhealthy_workers=message.unhealthy_workers,
        cordoned_workers=message.cordoned_workers,
        draining_workers=message.draining_workers,
        total_capacity=message.total_capacity,
        used_capacity=message.used_capacity,
        available_capacity=message.available_capacity,
        tasks_completed=message.tasks_completed,
        tasks_failed=message.tasks_failed,
        success_rate=message.success_rate,
        server_time=_datetime(message, "server_time") or _EPOCH,
        revision=message.revision,
        active_reservations=message.active_reservations,
        eviction=to_eviction_status(message.eviction),
    )


def to_eviction_resumed(message: "service_pb2.ResumeEvictionResponse") -> EvictionResumed:
    return EvictionResumed(was_paused=message.was_paused, eviction=to_eviction_status(message.eviction))


def to_worker_event(message: "service_pb2.WorkerEvent") -> WorkerEvent:
    return WorkerEvent(
        type=_EVENT_TYPES.get(message.type, "unknown"),
        revision=message.revision,
        worker=to_worker(message.worker),
        occurred_at=_datetime(message, "occurred_at") or _EPOCH,
        previous_health=(
            None if message.previous_health_status == worker_pb2.HEALTH_STATUS_UNSPECIFIED else health_name(message.previous_health_status)
        ),
        removal_reason=(
            None if message.removal_reason == service_pb2.REMOVAL_REASON_UNSPECIFIED else _REMOVAL_REASONS.get(message.removal_reason, "unknown")
        ),
        previous_state=None if message.previous_state == worker_pb2.WORKER_STATE_UNSPECIFIED else state_name(message.previous_state),
    )


def to_heartbeat_reply(message: "service_pb2.HeartbeatStreamResponse") -> HeartbeatReply:
    interval = message.next_heartbeat_interval if message.HasField("next_heartbeat_interval") else None
    return HeartbeatReply(
        worker_id=message.worker_id,
        sequence=message.sequence,
        health_status=health_name(message.health_status),
        server_time=_datetime(message, "server_time") or _EPOCH,
        next_heartbeat_s=None if interval is None else interval.seconds + interval.nanos / 1e9,
        drain_requested=message.drain_requested,
        drain_deadline=_datetime(message, "drain_deadline"),
    )


def _worker_fields(message: "worker_pb2.Worker") -> dict:
    metrics = message.metrics
    return dict(
        id=message.id,
        node_id=message.node_id,
        capabilities=tuple(message.capabilities),
        health_status=health_name(message.health_status),
        current_tasks=message.current_tasks,
        max_concurrent_tasks=message.max_concurrent_tasks,
        available_capacity=message.available_capacity,
        success_rate=message.success_rate,
        registered_at=_datetime(message, "registered_at") or _EPOCH,
        last_heartbeat_at=_datetime(message, "last_heartbeat_at") or _EPOCH,
        metrics=WorkerMetrics(
            tasks_completed=metrics.tasks_completed,
            tasks_failed_count=metrics.tasks_failed_count,
            average_task_duration_ms=metrics.average_task_duration_ms,
        ),
        labels=Labels(message.labels),
        version=message.version,
        state=state_name(message.state),
        drain_deadline=_datetime(message, "drain_deadline"),
    )


def _datetime(message, field: str) -> Optional[datetime]:
    """A Timestamp field as an aware UTC datetime, or None when the field is unset."""
    if not message.HasField(field):
        return None
    return getattr(message, field).ToDatetime(tzinfo=timezone.utc)
