"""WorkerRegistryClient against a real registry: every RPC, its results and its errors."""

from __future__ import annotations

import socket
from datetime import datetime, timedelta, timezone

import grpc
import pytest

from sentinel_registry import (
    Acquisition,
    NoWorkerAvailableError,
    RankedWorker,
    RegistryError,
    RetryPolicy,
    Backoff,
    Worker,
    WorkerRegistryClient,
)


def test_register_worker_returns_the_worker_with_its_id_and_aware_datetimes(client, node_id):
    node = node_id()
    worker = client.register_worker(node, ["coder", "tester"], 5)
    assert isinstance(worker, Worker)
    assert worker.id.startswith("worker-")
    assert (worker.node_id, worker.capabilities, worker.max_concurrent_tasks) == (node, ("coder", "tester"), 5)
    assert (worker.current_tasks, worker.available_capacity, worker.health_status) == (0, 5, "healthy")
    assert worker.registered_at.tzinfo is not None
    assert abs(datetime.now(timezone.utc) - worker.registered_at) < timedelta(minutes=1)
    assert (worker.metrics.tasks_completed, worker.metrics.tasks_failed_count, worker.metrics.average_task_duration_ms) == (0, 0, 0)
    assert client.worker_token(worker.id)  # issued even with authentication off, remembered for its calls


def test_the_guides_calls_keep_count_and_metrics(client, node_id):
    worker = client.register_worker(node_id(), ["coder"], 5)
    beaten = client.heartbeat(worker.id)
    assert beaten.last_heartbeat_at >= worker.last_heartbeat_at
    assert client.update_task_count(worker.id, 1).current_tasks == 1
    recorded = client.record_task_completion(worker.id, True, 5000)
    assert (recorded.current_tasks, recorded.metrics.tasks_completed, recorded.metrics.average_task_duration_ms) == (1, 1, 5000)
    recorded = client.record_task_completion(worker.id, False, 3000)
    assert (recorded.metrics.tasks_failed_count, recorded.metrics.average_task_duration_ms, recorded.success_rate) == (1, 4000, 0.5)
    assert client.update_task_count(worker.id, -1).available_capacity == 5
    assert client.get_worker(worker.id) == client.get_worker(worker.id)  # plain, comparable dataclasses


def test_errors_carry_the_code_name_and_the_servers_message(client, node_id):
    worker = client.register_worker(node_id(), ["coder"], 2)
    with pytest.raises(RegistryError) as refused:
        client.update_task_count(worker.id, -5)
    assert refused.value.code_name == "FAILED_PRECONDITION"
    assert refused.value.code is grpc.StatusCode.FAILED_PRECONDITION
    assert client.get_worker(worker.id).current_tasks == 0  # nothing changed

    with pytest.raises(RegistryError) as invalid:
        client.register_worker(node_id(), ["coder"], 0)
    assert invalid.value.code_name == "INVALID_ARGUMENT"
    assert "max_concurrent_tasks" in str(invalid.value)

    client.unregister_worker(worker.id)
    with pytest.raises(RegistryError) as missing:
        client.get_worker(worker.id)
    assert missing.value.code_name == "NOT_FOUND"
    # The guide's error handling tests the message, and still can.
    assert "not found" in str(missing.value) and worker.id in str(missing.value)
    assert missing.value.method == "get_worker"
    assert not isinstance(missing.value, NoWorkerAvailableError)
    # The registry says why the worker left, in the message and in the sentinel-removal-reason trailer.
    assert missing.value.details == f"worker {worker.id} not found: it was unregistered"
    assert missing.value.removal_reason == "unregistered"
    assert dict(missing.value.trailing_metadata)["sentinel-removal-reason"] == "unregistered"
    with pytest.raises(RegistryError) as unknown:
        client.get_worker("worker-1-neverregistered")
    assert (unknown.value.code_name, unknown.value.removal_reason) == ("NOT_FOUND", None)


def test_arguments_that_cannot_be_sent_fail_before_any_call(client):
    with pytest.raises(ValueError, match="health must be one of healthy, degraded, unhealthy"):
        client.discover_workers(health=["sick"])
    with pytest.raises(TypeError, match="list of strings"):
        client.discover_workers(capabilities="coder")


def test_discover_workers_filters_and_follows_every_page(registry, node_id):
    with WorkerRegistryClient(registry.address, discover_page_size=2) as paging:
        capability = node_id("cap")
        ids = [paging.register_worker(node_id(), [capability, "gpu" if i % 2 else "cpu"], 2).id for i in range(5)]
        assert [w.id for w in paging.discover_workers(capabilities=[capability])] == sorted(ids)  # 3 pages, ordered by id
        gpu = paging.discover_workers(capabilities=[capability, "gpu"], health="healthy")
        assert [w.id for w in gpu] == sorted(ids[1::2])
        paging.update_task_count(ids[0], 2)
        free = paging.discover_workers(capabilities=[capability], min_available_capacity=1)
        assert ids[0] not in [w.id for w in free] and len(free) == 4
        assert paging.discover_workers(capabilities=[capability], health=["degraded", "unhealthy"]) == []


def test_load_balancing_ranks_best_first_with_the_score_parts(client, node_id):
    capability = node_id("cap")
    busy = client.register_worker(node_id(), [capability], 4)
    idle = client.register_worker(node_id(), [capability], 4)
    client.update_task_count(busy.id, 3)
    ranked = client.get_workers_for_load_balancing(capabilities=[capability], health=["healthy", "degraded"], min_available_capacity=1)
    assert [r.id for r in ranked] == [idle.id, busy.id]
    best = ranked[0]
    assert isinstance(best, RankedWorker)
    # The guide prints these straight off the ranked worker.
    assert (best.node_id, best.available_capacity, best.capacity_score, best.success_score, best.speed_score) == (idle.node_id, 4, 1.0, 0.5, 0.5)
    assert best.priority == pytest.approx(0.5 * 1 + 0.3 * 0.5 + 0.2 * 0.5)
    assert [r.id for r in client.get_workers_for_load_balancing(capabilities=[capability], limit=1)] == [idle.id]


def test_registry_stats_has_every_field_the_server_sends(client, node_id):
    worker = client.register_worker(node_id(), [node_id("cap")], 3)
    acquired = client.acquire_worker(capabilities=[worker.capabilities[0]])
    stats = client.get_registry_stats()
    assert stats.total_workers >= 1 and stats.healthy_workers >= 1
    assert stats.total_workers == stats.healthy_workers + stats.degraded_workers + stats.unhealthy_workers
    assert stats.available_capacity == stats.total_capacity - stats.used_capacity
    assert stats.active_reservations >= 1
    assert stats.revision >= 2
    assert stats.server_time.tzinfo is not None
    assert stats.eviction.paused is False and stats.eviction.reason == "" and stats.eviction.paused_since is None
    assert isinstance(stats.eviction.pauses_total, int) and isinstance(stats.eviction.expected_intake, int)
    client.release_worker(acquired.reservation_id, True, 1)


def test_acquire_and_release_a_slot(client, node_id):
    capability = node_id("cap")
    worker = client.register_worker(node_id(), [capability], 1)
    acquired = client.acquire_worker(capabilities=[capability])
    assert isinstance(acquired, Acquisition)
    assert acquired.worker.id == worker.id and acquired.worker.current_tasks == 1
    assert acquired.priority == acquired.worker.priority
    assert acquired.reservation_id and acquired.expires_at > datetime.now(timezone.utc)

    with pytest.raises(NoWorkerAvailableError) as full:
        client.acquire_worker(capabilities=[capability])
    assert full.value.code_name == "RESOURCE_EXHAUSTED"
    assert isinstance(full.value, RegistryError)  # one exception type to catch

    assert client.release_worker(acquired.reservation_id, True, 250) == "released"
    assert client.release_worker(acquired.reservation_id, True, 250) == "already-released"
    after = client.get_worker(worker.id)
    assert (after.current_tasks, after.metrics.tasks_completed, after.metrics.average_task_duration_ms) == (0, 1, 250)

    with pytest.raises(NoWorkerAvailableError, match="no worker matches"):
        client.acquire_worker(capabilities=[node_id("nobody-has-this")])
    with pytest.raises(RegistryError) as unknown:
        client.release_worker("rsv-0-unknown", True, 1)
    assert unknown.value.code_name == "NOT_FOUND"


def test_worker_context_manager_releases_with_success_and_duration(client, node_id):
    capability = node_id("cap")
    worker = client.register_worker(node_id(), [capability], 1)
    with client.worker(capabilities=[capability]) as acquired:
        assert client.get_worker(worker.id).current_tasks == 1
        assert acquired.worker.id == worker.id
    after = client.get_worker(worker.id)
    assert (after.current_tasks, after.metrics.tasks_completed, after.metrics.tasks_failed_count) == (0, 1, 0)

    with pytest.raises(ZeroDivisionError):
        with client.worker(capabilities=[capability]):
            1 / 0
    after = client.get_worker(worker.id)
    assert (after.current_tasks, after.metrics.tasks_completed, after.metrics.tasks_failed_count) == (0, 1, 1)
    assert after.metrics.average_task_duration_ms >= 0


def test_resume_eviction_answers_whether_it_was_paused(client):
    resumed = client.resume_eviction()
    assert resumed.was_paused is False
    assert resumed.eviction.paused is False


def test_a_closed_client_raises_cancelled(registry):
    closed = WorkerRegistryClient(registry.address)
    closed.close()
    closed.close()  # idempotent
    with pytest.raises(RegistryError) as cancelled:
        closed.get_registry_stats()
    assert cancelled.value.code_name == "CANCELLED"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_reads_are_retried_on_unavailable_with_full_jitter_and_writes_are_not():
    waits = []
    policy = RetryPolicy(max_attempts=4, backoff=Backoff(base_s=0.1, max_s=0.3, random=lambda: 0.5), sleep=waits.append)
    with WorkerRegistryClient(f"127.0.0.1:{_free_port()}", retry=policy, timeout_s=2) as nowhere:
        with pytest.raises(RegistryError) as read:
            nowhere.get_registry_stats()
        assert read.value.code_name == "UNAVAILABLE"
        # Half of each ceiling: min(0.3, 0.1 x 2^attempt).
        assert waits == pytest.approx([0.05, 0.1, 0.15])
        waits.clear()
        with pytest.raises(RegistryError) as write:
            nowhere.register_worker("n", ["c"], 1)
        assert write.value.code_name == "UNAVAILABLE"
        assert waits == []


def test_call_metadata_is_added_to_every_call(client):
    seen = []

    def metadata(method):
        seen.append(method)
        return [("x-request-source", "tests")]

    with WorkerRegistryClient(client.address, call_metadata=metadata) as decorated:
        decorated.get_registry_stats()
    assert seen == ["get_registry_stats"]
