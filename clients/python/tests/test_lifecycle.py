"""The fleet lifecycle through WorkerRegistryClient, against a real registry: labels, versions, selectors, cordon, drain."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest

from sentinel_registry import NoWorkerAvailableError, RegistryError, WorkerEvent


def events_of(client, worker_id, since, until_type="unregistered", timeout_s=20.0):
    """The watch events of one worker from revision ``since`` on, up to the first of type ``until_type``."""
    events = []
    with client.watch_workers(start_revision=since) as watch:
        timer = threading.Timer(timeout_s, watch.close)
        timer.start()
        try:
            for item in watch:
                assert isinstance(item, WorkerEvent), item
                if item.worker.id == worker_id:
                    events.append(item)
                    if item.type == until_type:
                        return events
        finally:
            timer.cancel()
    raise AssertionError(f"no {until_type} event for {worker_id} within {timeout_s}s: {events}")


def test_labels_and_version_round_trip(client, node_id):
    labels = {"zone": "eu-1", "example.com/tier": "spot", "ssd": ""}
    worker = client.register_worker(node_id(), ["coder"], 2, labels=labels, version="2026.11.3")
    assert (worker.labels, worker.version, worker.state, worker.drain_deadline) == (labels, "2026.11.3", "active", None)
    read = client.get_worker(worker.id)
    assert (read.labels, read.version) == (labels, "2026.11.3")
    assert dict(read.labels) == labels
    unversioned = client.register_worker(node_id(), ["coder"], 1)
    assert (unversioned.labels, unversioned.version) == ({}, "")


def test_labels_that_break_kubernetes_rules_are_refused_naming_the_label(client, node_id):
    with pytest.raises(RegistryError) as refused:
        client.register_worker(node_id(), ["coder"], 1, labels={"zone": "has space"})
    assert refused.value.code_name == "INVALID_ARGUMENT"
    assert "zone" in str(refused.value)


def test_label_selectors_match_as_kubernetes_says(client, node_id):
    capability = node_id("cap")
    fleet = {
        "a100-eu": client.register_worker(node_id(), [capability], 1, labels={"gpu": "a100", "zone": "eu-1", "ssd": ""}, version="1"),
        "h100-us": client.register_worker(node_id(), [capability], 1, labels={"gpu": "h100", "zone": "us-1"}, version="2"),
        "t4-spot": client.register_worker(node_id(), [capability], 1, labels={"gpu": "t4", "tier": "spot", "preemptible": "true"}, version="2"),
        "bare": client.register_worker(node_id(), [capability], 1),
    }

    def selected(selector, versions=None):
        return {name for name, worker in fleet.items() if worker.id in {w.id for w in client.discover_workers([capability], label_selector=selector, versions=versions)}}

    assert selected("zone=eu-1") == {"a100-eu"}
    assert selected("zone==eu-1") == {"a100-eu"}
    assert selected("tier!=spot") == {"a100-eu", "h100-us", "bare"}  # no label matches !=
    assert selected("gpu in (a100,h100)") == {"a100-eu", "h100-us"}
    assert selected("gpu notin (t4)") == {"a100-eu", "h100-us", "bare"}  # no label matches notin
    assert selected("ssd") == {"a100-eu"}
    assert selected("!preemptible") == {"a100-eu", "h100-us", "bare"}
    assert selected("gpu, !preemptible, zone in (eu-1, us-1)") == {"a100-eu", "h100-us"}
    assert selected("", versions=["2"]) == {"h100-us", "t4-spot"}
    assert selected("gpu in (a100,h100)", versions=["2", "3"]) == {"h100-us"}
    assert selected("") == set(fleet)

    ranked = client.get_workers_for_load_balancing([capability], label_selector="gpu notin (t4)", versions=["1", "2"])
    assert {w.id for w in ranked} == {fleet["a100-eu"].id, fleet["h100-us"].id}
    with client.worker([capability], label_selector="zone=us-1") as acquired:
        assert acquired.worker.id == fleet["h100-us"].id


def test_a_selector_syntax_error_is_invalid_argument_naming_the_position(client):
    with pytest.raises(RegistryError) as refused:
        client.discover_workers(label_selector="gpu in (a100")
    assert refused.value.code_name == "INVALID_ARGUMENT"
    assert "label_selector" in str(refused.value) and any(ch.isdigit() for ch in str(refused.value))


def test_cordon_takes_a_worker_out_of_rotation_and_uncordon_puts_it_back(client, node_id):
    capability = node_id("cap")
    worker = client.register_worker(node_id(), [capability], 2)
    since = client.get_registry_stats().revision + 1

    before = client.get_registry_stats()
    cordoned = client.cordon_worker(worker.id)
    assert (cordoned.id, cordoned.state) == (worker.id, "cordoned")
    assert client.get_registry_stats().cordoned_workers == before.cordoned_workers + 1
    assert client.cordon_worker(worker.id).state == "cordoned"  # again: nothing changes
    assert client.get_workers_for_load_balancing([capability]) == []
    with pytest.raises(NoWorkerAvailableError):
        client.acquire_worker([capability])
    assert [w.id for w in client.discover_workers([capability])] == [worker.id]  # still listed, still heartbeating
    assert client.heartbeat(worker.id).state == "cordoned"

    assert client.uncordon_worker(worker.id).state == "active"
    assert [w.id for w in client.get_workers_for_load_balancing([capability])] == [worker.id]
    client.unregister_worker(worker.id)

    changes = [(e.type, e.previous_state, e.worker.state) for e in events_of(client, worker.id, since) if e.type == "state_changed"]
    assert changes == [("state_changed", "active", "cordoned"), ("state_changed", "cordoned", "active")]


def test_a_drained_busy_worker_leaves_rotation_and_is_removed_when_its_last_task_ends(client, node_id):
    capability = node_id("cap")
    worker = client.register_worker(node_id(), [capability], 2)
    client.update_task_count(worker.id, 1)
    since = client.get_registry_stats().revision + 1

    before = datetime.now(timezone.utc)
    draining_before = client.get_registry_stats().draining_workers
    drained = client.drain_worker(worker.id, grace=timedelta(minutes=5))
    assert drained.state == "draining"
    assert client.get_registry_stats().draining_workers == draining_before + 1
    assert before + timedelta(minutes=4) < drained.drain_deadline < before + timedelta(minutes=6)
    assert client.drain_worker(worker.id, grace=600).drain_deadline == drained.drain_deadline  # the sooner deadline stays
    assert client.get_workers_for_load_balancing([capability]) == []
    for undo in (client.cordon_worker, client.uncordon_worker):
        with pytest.raises(RegistryError) as refused:
            undo(worker.id)
        assert refused.value.code_name == "FAILED_PRECONDITION"
    beaten = client.heartbeat(worker.id)
    assert (beaten.state, beaten.drain_deadline) == ("draining", drained.drain_deadline)

    client.update_task_count(worker.id, -1)  # the last task ends: the registry removes it
    with pytest.raises(RegistryError) as gone:
        client.get_worker(worker.id)
    assert gone.value.code_name == "NOT_FOUND"
    events = events_of(client, worker.id, since)
    assert [(e.type, e.previous_state) for e in events if e.type == "state_changed"] == [("state_changed", "active")]
    assert (events[-1].type, events[-1].removal_reason) == ("unregistered", "drained")


def test_a_drain_deadline_removes_a_worker_still_busy(client, node_id):
    worker = client.register_worker(node_id(), [node_id("cap")], 2)
    client.update_task_count(worker.id, 1)
    since = client.get_registry_stats().revision + 1
    client.drain_worker(worker.id, grace=1)
    events = events_of(client, worker.id, since, timeout_s=30)
    assert (events[-1].type, events[-1].removal_reason) == ("unregistered", "drain_deadline")
    assert events[-1].occurred_at >= events[0].occurred_at + timedelta(seconds=1) - timedelta(milliseconds=50)
    with pytest.raises(RegistryError) as gone:
        client.update_task_count(worker.id, -1)  # the task ends after the deadline
    assert (gone.value.code_name, gone.value.removal_reason) == ("NOT_FOUND", "drain_deadline")
    assert gone.value.details == f"worker {worker.id} not found: it was drained and removed at its drain deadline"


def test_drain_refuses_a_grace_outside_one_second_to_seven_days_and_unknown_workers(client, node_id):
    worker = client.register_worker(node_id(), ["coder"], 1)
    for grace in (0.5, timedelta(days=8)):
        with pytest.raises(RegistryError) as refused:
            client.drain_worker(worker.id, grace=grace)
        assert refused.value.code_name == "INVALID_ARGUMENT" and "grace" in str(refused.value)
    assert client.get_worker(worker.id).state == "active"
    for call in (client.cordon_worker, client.uncordon_worker, client.drain_worker):
        with pytest.raises(RegistryError) as unknown:
            call("worker-1-nosuchworker")
        assert unknown.value.code_name == "NOT_FOUND"


def test_an_idle_worker_is_removed_as_soon_as_it_is_drained(client, node_id):
    worker = client.register_worker(node_id(), ["coder"], 1)
    since = client.get_registry_stats().revision + 1
    client.drain_worker(worker.id)  # the registry's default grace: 10 minutes
    events = events_of(client, worker.id, since)
    assert (events[-1].type, events[-1].removal_reason) == ("unregistered", "drained")
    with pytest.raises(RegistryError) as gone:
        client.heartbeat(worker.id)
    assert (gone.value.code_name, gone.value.removal_reason) == ("NOT_FOUND", "drained")
    assert gone.value.details == f"worker {worker.id} not found: it was drained and removed once its tasks finished"


def test_a_watch_filtered_by_selector_and_version_sees_only_matching_workers(client, node_id):
    since = client.get_registry_stats().revision + 1
    client.register_worker(node_id(), ["coder"], 1, labels={"zone": "us-1"}, version="2")
    client.register_worker(node_id(), ["coder"], 1, labels={"zone": "eu-1"}, version="1")
    wanted = client.register_worker(node_id(), ["coder"], 1, labels={"zone": "eu-1"}, version="2")
    with client.watch_workers(start_revision=since, label_selector="zone=eu-1", versions=["2"]) as watch:
        first = next(watch)
    assert (first.type, first.worker.id, first.worker.labels) == ("registered", wanted.id, {"zone": "eu-1"})
