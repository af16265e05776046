"""The proto-to-dataclass mapping and the backoff, without a server."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import grpc
import pytest

from sentinel_registry import Backoff, RegistryError
from sentinel_registry import Labels, WorkerDrainingError, models, query
from sentinel_registry._proto import service_pb2, worker_pb2


def test_an_unknown_health_reads_as_unhealthy_so_it_is_never_picked():
    assert models.health_name(worker_pb2.HEALTH_STATUS_HEALTHY) == "healthy"
    assert models.health_name(worker_pb2.HEALTH_STATUS_UNSPECIFIED) == "unhealthy"
    assert models.health_name(42) == "unhealthy"  # a value a newer contract may add


def test_unknown_event_types_outcomes_and_reasons_map_to_unknown():
    event = service_pb2.WorkerEvent(revision=7, type=42, removal_reason=42, previous_health_status=42)
    mapped = models.to_worker_event(event)
    assert (mapped.type, mapped.revision, mapped.removal_reason, mapped.previous_health) == ("unknown", 7, "unknown", "unhealthy")
    assert models.to_release_outcome(42) == "unknown"
    assert models.to_release_outcome(service_pb2.RELEASE_OUTCOME_EXPIRED) == "expired"


def test_unset_fields_read_as_zero_epoch_or_none():
    worker = models.to_worker(worker_pb2.Worker(id="w"))
    assert worker.registered_at == datetime.fromtimestamp(0, tz=timezone.utc)
    assert worker.metrics.tasks_completed == 0 and worker.capabilities == ()
    event = models.to_worker_event(service_pb2.WorkerEvent(type=service_pb2.WORKER_EVENT_TYPE_HEALTH_CHANGED))
    assert (event.type, event.previous_health, event.removal_reason) == ("health_changed", None, None)
    stats = models.to_registry_stats(service_pb2.GetRegistryStatsResponse())
    assert stats.eviction.paused is False and stats.eviction.resumes_at is None


def test_timestamps_become_aware_utc_datetimes():
    message = worker_pb2.Worker()
    message.registered_at.FromDatetime(datetime(2026, 1, 2, 3, 4, 5, 600000, tzinfo=timezone.utc))
    assert models.to_worker(message).registered_at == datetime(2026, 1, 2, 3, 4, 5, 600000, tzinfo=timezone.utc)


def test_heartbeat_reply_interval_in_seconds():
    reply = service_pb2.HeartbeatStreamResponse(worker_id="w", sequence=3, health_status=worker_pb2.HEALTH_STATUS_DEGRADED)
    assert models.to_heartbeat_reply(reply).next_heartbeat_s is None
    reply.next_heartbeat_interval.FromMilliseconds(1500)
    mapped = models.to_heartbeat_reply(reply)
    assert (mapped.next_heartbeat_s, mapped.health_status, mapped.sequence) == (1.5, "degraded", 3)


def test_filters_accept_one_health_name_or_several():
    assert list(query.worker_filter(health="healthy").health_statuses) == [worker_pb2.HEALTH_STATUS_HEALTHY]
    both = query.worker_filter(["a", "b"], ["healthy", "degraded"], 2)
    assert (list(both.capabilities), len(both.health_statuses), both.min_available_capacity) == (["a", "b"], 2, 2)


def test_filters_carry_the_selector_as_written_and_the_versions():
    selected = query.worker_filter(label_selector="zone=eu-1, gpu in (a100,h100),!spot", versions=("1.0", "2.0"))
    assert (selected.label_selector, list(selected.versions)) == ("zone=eu-1, gpu in (a100,h100),!spot", ["1.0", "2.0"])
    with pytest.raises(TypeError, match="versions must be a list of strings"):
        query.worker_filter(versions="2.0")
    with pytest.raises(TypeError, match="label_selector must be a string"):
        query.worker_filter(label_selector={"zone": "eu-1"})


def test_labels_must_map_strings_to_strings():
    assert query.labels(None) == {} and query.labels({"zone": "eu-1"}) == {"zone": "eu-1"}
    with pytest.raises(TypeError, match="labels must map strings to strings"):
        query.labels({"replicas": 3})
    with pytest.raises(TypeError, match="labels must be a mapping"):
        query.labels(["zone=eu-1"])


def test_grace_is_a_timedelta_or_seconds_and_none_leaves_the_registrys_default():
    assert query.grace_duration(None) is None
    assert query.grace_duration(timedelta(minutes=10)).ToTimedelta() == timedelta(minutes=10)
    assert query.grace_duration(1.5).ToMilliseconds() == 1500
    # Out of the registry's range is the registry's to refuse (INVALID_ARGUMENT names the rule).
    assert query.grace_duration(0).ToMilliseconds() == 0
    with pytest.raises(TypeError):
        query.grace_duration("10m")
    with pytest.raises(TypeError):
        query.grace_duration(True)
    with pytest.raises(ValueError):
        query.grace_duration(float("inf"))


def test_labels_version_state_and_drain_deadline_on_a_worker():
    message = worker_pb2.Worker(id="w", labels={"zone": "eu-1", "tier": "spot"}, version="2.1.0", state=worker_pb2.WORKER_STATE_DRAINING)
    message.drain_deadline.FromDatetime(datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc))
    worker = models.to_worker(message)
    assert worker.labels == {"zone": "eu-1", "tier": "spot"} and isinstance(worker.labels, Labels)
    assert (worker.version, worker.state, worker.drain_deadline) == ("2.1.0", "draining", datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc))
    assert hash(worker) == hash(models.to_worker(message))  # still a hashable value
    with pytest.raises(TypeError):
        worker.labels["zone"] = "us-1"  # read-only
    plain = models.to_worker(worker_pb2.Worker(id="w"))
    assert (plain.labels, plain.version, plain.state, plain.drain_deadline) == ({}, "", "active", None)


def test_an_unknown_worker_state_is_never_read_as_active():
    assert models.to_worker(worker_pb2.Worker(state=worker_pb2.WORKER_STATE_CORDONED)).state == "cordoned"
    assert models.to_worker(worker_pb2.Worker(state=42)).state == "unknown"


def test_state_changes_and_drain_removals_in_watch_events():
    changed = models.to_worker_event(
        service_pb2.WorkerEvent(type=service_pb2.WORKER_EVENT_TYPE_STATE_CHANGED, previous_state=worker_pb2.WORKER_STATE_ACTIVE)
    )
    assert (changed.type, changed.previous_state, changed.removal_reason) == ("state_changed", "active", None)
    for reason, name in ((service_pb2.REMOVAL_REASON_DRAINED, "drained"), (service_pb2.REMOVAL_REASON_DRAIN_DEADLINE, "drain_deadline")):
        removed = models.to_worker_event(service_pb2.WorkerEvent(type=service_pb2.WORKER_EVENT_TYPE_UNREGISTERED, removal_reason=reason))
        assert (removed.type, removed.removal_reason, removed.previous_state) == ("unregistered", name, None)


def test_heartbeat_replies_carry_the_drain_request_and_deadline():
    reply = service_pb2.HeartbeatStreamResponse(worker_id="w", sequence=1)
    assert (models.to_heartbeat_reply(reply).drain_requested, models.to_heartbeat_reply(reply).drain_deadline) == (False, None)
    reply.drain_requested = True
    reply.drain_deadline.FromDatetime(datetime(2026, 1, 2, tzinfo=timezone.utc))
    mapped = models.to_heartbeat_reply(reply)
    assert (mapped.drain_requested, mapped.drain_deadline) == (True, datetime(2026, 1, 2, tzinfo=timezone.utc))


def test_worker_draining_error_says_what_to_do():
    draining = WorkerDrainingError("worker-1", datetime(2026, 1, 2, tzinfo=timezone.utc))
    assert isinstance(draining, RuntimeError) and not isinstance(draining, RegistryError)
    assert str(draining) == "worker worker-1 is draining: it takes no new task, only finishes the running ones until its removal at 2026-01-02T00:00:00+00:00"
    assert str(WorkerDrainingError("worker-1", drained=True)) == "worker worker-1 has drained: it takes no new task"


def test_full_jitter_draws_below_a_capped_exponential_ceiling():
    fixed = Backoff(base_s=0.5, max_s=30, random=lambda: 0.999)
    assert [fixed.ceiling_s(n) for n in range(8)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    assert fixed.ceiling_s(100_000) == 30  # no overflow
    assert Backoff(base_s=0.5, max_s=30, random=lambda: 0.0).delay_s(5) == 0
    assert fixed.delay_s(2) == pytest.approx(1.998)
    with pytest.raises(ValueError):
        Backoff(base_s=2, max_s=1)
    with pytest.raises(ValueError):
        Backoff(base_s=1, max_s=2, random=lambda: 1.0).delay_s(0)


def test_registry_error_names_the_failure_when_the_server_gave_no_details():
    error = RegistryError("heartbeat", grpc.StatusCode.UNAVAILABLE, "")
    assert str(error) == "heartbeat failed with UNAVAILABLE"
    assert error.code_name == "UNAVAILABLE"
