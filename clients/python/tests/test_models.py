"""The proto-to-dataclass mapping and the backoff, without a server."""

from __future__ import annotations

from datetime import datetime, timezone

import grpc
import pytest

from sentinel_registry import Backoff, RegistryError
from sentinel_registry import models
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
    assert list(models.worker_filter(health="healthy").health_statuses) == [worker_pb2.HEALTH_STATUS_HEALTHY]
    both = models.worker_filter(["a", "b"], ["healthy", "degraded"], 2)
    assert (list(both.capabilities), len(both.health_statuses), both.min_available_capacity) == (["a", "b"], 2, 2)


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
