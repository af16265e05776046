"""WorkerNode against a real registry: heartbeats, tasks, restarts, lost records, outages."""

from __future__ import annotations

import signal
import time
from datetime import timedelta

import pytest

from registry_server import wait_until
from sentinel_registry import RegistryError, WorkerNode

def healthy_or_none(client, worker_id):
    """The worker if the registry answers and says it is healthy; None while it is unreachable or not healthy."""
    try:
        worker = client.get_worker(worker_id)
    except RegistryError as error:
        if error.code_name == "UNAVAILABLE":
            return None
        raise
    return worker if worker.health_status == "healthy" else None


def node_for(registry, node_id, max_concurrent_tasks=2, **options):
    options.setdefault("reconnect_base_s", 0.05)
    options.setdefault("reconnect_max_s", 0.5)
    return WorkerNode(registry.address, node_id, ["coder", "tester"], max_concurrent_tasks, **options)


def test_start_registers_and_heartbeats_at_the_interval_the_server_suggests(fast_registry, observer, node_id):
    with node_for(fast_registry, node_id()) as node:
        assert node.state == "running"
        assert node.wait_connected(10)
        registered = observer.get_worker(node.worker_id)
        assert (registered.node_id, registered.capabilities, registered.max_concurrent_tasks) == (node.node_id, ("coder", "tester"), 2)
        # The node beats on the server's 200 ms schedule, not every 5 minutes: within seconds the last heartbeat has moved on.
        later = registered.last_heartbeat_at + timedelta(milliseconds=600)
        wait_until(lambda: observer.get_worker(node.worker_id).last_heartbeat_at > later, timeout_s=10, message="heartbeats every 200 ms")
        assert node.health_status == "healthy"
    assert node.state == "stopped"
    with pytest.raises(RegistryError) as gone:
        observer.get_worker(registered.id)
    assert gone.value.code_name == "NOT_FOUND"


def test_run_task_counts_up_records_the_duration_and_counts_down(fast_registry, observer, node_id):
    with node_for(fast_registry, node_id()) as node:
        during = []

        def task(a, b, pause_s=0.0):
            during.append(observer.get_worker(node.worker_id).current_tasks)
            time.sleep(pause_s)
            return a + b

        assert node.run_task(task, 2, 3, pause_s=0.05) == 5
        assert during == [1]
        after = observer.get_worker(node.worker_id)
        assert (after.current_tasks, after.metrics.tasks_completed, after.metrics.tasks_failed_count) == (0, 1, 0)
        assert after.metrics.average_task_duration_ms >= 50


def test_a_failing_task_is_recorded_as_failed_and_its_error_propagates_unchanged(fast_registry, observer, node_id):
    class TaskBroke(Exception):
        pass

    broke = TaskBroke("boom")
    with node_for(fast_registry, node_id()) as node:
        with pytest.raises(TaskBroke) as raised:
            node.run_task(lambda: (_ for _ in ()).throw(broke))
        assert raised.value is broke
        after = observer.get_worker(node.worker_id)
        assert (after.current_tasks, after.metrics.tasks_completed, after.metrics.tasks_failed_count) == (0, 0, 1)


def test_a_task_refused_at_capacity_never_runs_and_records_no_failure(fast_registry, observer, node_id):
    with node_for(fast_registry, node_id(), max_concurrent_tasks=1) as node:
        inner_ran = []

        def outer():
            with pytest.raises(RegistryError) as refused:
                node.run_task(inner_ran.append, "ran")
            return refused.value.code_name

        assert node.run_task(outer) == "FAILED_PRECONDITION"
        assert inner_ran == []
        after = observer.get_worker(node.worker_id)
        assert (after.current_tasks, after.metrics.tasks_completed, after.metrics.tasks_failed_count) == (0, 1, 0)


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGKILL], ids=["graceful-restart", "crash-restart"])
def test_a_worker_node_survives_a_registry_restart_with_the_same_id(fast_registry, observer, node_id, thread_failures, stop_signal):
    with node_for(fast_registry, node_id()) as node:
        assert node.wait_connected(10)
        worker_id = node.worker_id
        fast_registry.stop(stop_signal)
        wait_until(lambda: not node.connected, message="the node to notice the registry is gone")
        time.sleep(0.5)  # down for a while: the node keeps retrying in the background
        fast_registry.start()  # same port, same database file
        # grpc re-resolves the address before it reconnects: seconds, not milliseconds.
        assert node.wait_connected(60), "the node did not reconnect"
        assert node.worker_id == worker_id
        assert node.reconnects >= 1
        # The observer's own channel reconnects on its own schedule.
        back = wait_until(lambda: healthy_or_none(observer, worker_id), timeout_s=60, message="the worker to be healthy again")
        assert back.id == worker_id
        assert node.run_task(lambda: "after restart") == "after restart"
    assert thread_failures == []


def test_a_frozen_registry_is_noticed_by_the_reply_timeout_and_the_node_returns_when_it_thaws(fast_registry, observer, node_id, caplog):
    with node_for(fast_registry, node_id(), reply_timeout_s=0.5) as node:
        assert node.wait_connected(10)
        worker_id = node.worker_id
        fast_registry.process.send_signal(signal.SIGSTOP)  # the connection stays up; nothing answers
        try:
            timed_out = "DEADLINE_EXCEEDED: no heartbeat reply within 0.5s"
            wait_until(lambda: timed_out in caplog.text, timeout_s=10, message="the reply timeout")
            assert not node.connected
        finally:
            fast_registry.process.send_signal(signal.SIGCONT)
        assert node.wait_connected(60)
        assert node.worker_id == worker_id
        assert observer.get_worker(worker_id).id == worker_id


def test_a_node_whose_record_was_removed_registers_again_and_carries_the_new_id(fast_registry, observer, node_id):
    with node_for(fast_registry, node_id()) as node:
        assert node.wait_connected(10)
        first_id = node.worker_id
        observer.unregister_worker(first_id)  # as cleanup or an admin would
        new_id = wait_until(lambda: node.worker_id if node.worker_id != first_id else None, message="re-registration")
        assert observer.get_worker(new_id).node_id == node.node_id
        assert node.wait_connected(10)
        assert node.run_task(lambda: 1) == 1
        assert observer.get_worker(new_id).metrics.tasks_completed == 1
        with pytest.raises(RegistryError):
            observer.get_worker(first_id)


def test_a_registry_outage_never_escapes_the_background_thread(fast_registry, node_id, thread_failures, caplog):
    node = node_for(fast_registry, node_id())
    node.start()
    assert node.wait_connected(10)
    fast_registry.stop(signal.SIGKILL)
    wait_until(lambda: caplog.text.count("heartbeat stream lost; reconnecting") >= 3, message="several failed reconnects")
    assert node.state == "running" and not node.connected
    started = time.monotonic()
    assert node.stop() is False  # could not unregister: logged, not raised
    assert time.monotonic() - started < 10
    assert node.state == "stopped"
    assert "could not be unregistered" in caplog.text
    assert thread_failures == []


def test_even_an_unexpected_error_in_the_background_thread_is_logged_and_survived(fast_registry, node_id, thread_failures, caplog):
    broken_random = lambda: 1.5  # noqa: E731 - outside [0, 1): every backoff computation raises ValueError
    with node_for(fast_registry, node_id(), random=broken_random, reconnect_base_s=0.05, reconnect_max_s=0.2) as node:
        assert node.wait_connected(10)
        worker_id = node.worker_id
        fast_registry.restart(signal.SIGKILL)
        assert node.wait_connected(60)
        assert node.worker_id == worker_id
    assert "unexpected failure in the heartbeat thread" in caplog.text
    assert thread_failures == []


def test_start_runs_once_and_run_task_needs_a_running_node(fast_registry, node_id):
    node = node_for(fast_registry, node_id())
    with pytest.raises(RuntimeError, match="needs a running node"):
        node.run_task(print)
    node.start()
    with pytest.raises(RuntimeError, match="needs an idle node"):
        node.start()
    assert node.stop() is True
    assert node.stop() is True  # idempotent
    with pytest.raises(RuntimeError):
        node.run_task(print)


def test_start_raises_when_the_registry_refuses_and_the_node_stays_idle(fast_registry, node_id):
    node = WorkerNode(fast_registry.address, node_id(), ["coder"], 0)
    with pytest.raises(RegistryError) as refused:
        node.start()
    assert refused.value.code_name == "INVALID_ARGUMENT"
    assert node.state == "idle"
    node.stop()
