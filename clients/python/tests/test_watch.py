"""watch_workers against a real registry: order, filters, resume after restarts, resync, closing."""

from __future__ import annotations

import signal
import threading
import time
from typing import List

import pytest

from registry_server import wait_until
from sentinel_registry import RegistryError, Resync, WorkerEvent, WorkerRegistryClient
from sentinel_registry._proto import service_pb2
from sentinel_registry.watch import events_of


class Collector:
    """Consumes a watch on a thread of its own, as an application would."""

    def __init__(self, watch) -> None:
        self.watch = watch
        self.items: List[object] = []
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for item in self.watch:
                self.items.append(item)
        except BaseException as error:  # noqa: BLE001 - reported by the test
            self.error = error

    def revisions(self) -> List[int]:
        return [item.revision for item in self.items]

    def wait_for_revision(self, revision: int, timeout_s: float = 60) -> None:
        wait_until(lambda: self.error or (self.items and self.items[-1].revision >= revision), timeout_s, message=f"revision {revision}")
        assert self.error is None, self.error

    def close(self) -> None:
        self.watch.close()
        self.thread.join(10)
        assert not self.thread.is_alive(), "the watch did not end on close()"


def answers(client: WorkerRegistryClient) -> bool:
    """Whether the registry answers a read (a channel in this process may still be reconnecting)."""
    try:
        client.get_registry_stats()
        return True
    except RegistryError as error:
        if error.code_name != "UNAVAILABLE":
            raise
        return False


def test_events_arrive_in_revision_order_with_their_types(client, node_id):
    since = client.get_registry_stats().revision
    capability = node_id("cap")
    worker = client.register_worker(node_id(), [capability], 2)
    client.update_task_count(worker.id, 1)
    client.unregister_worker(worker.id)
    with client.watch_workers(capabilities=[capability], start_revision=since + 1) as watch:
        events = [next(watch) for _ in range(3)]
    assert [e.type for e in events] == ["registered", "updated", "unregistered"]
    assert [e.revision for e in events] == sorted(e.revision for e in events)
    assert all(isinstance(e, WorkerEvent) and e.worker.id == worker.id for e in events)
    assert events[1].worker.current_tasks == 1
    assert events[0].occurred_at.tzinfo is not None
    assert watch.last_revision == events[-1].revision


def test_a_filtered_watch_sees_only_matching_workers(client, node_id):
    since = client.get_registry_stats().revision
    wanted, other = node_id("wanted"), node_id("other")
    client.register_worker(node_id(), [other], 1)
    mine = client.register_worker(node_id(), [wanted, "extra"], 1)
    with client.watch_workers(capabilities=[wanted], health=["healthy"], start_revision=since + 1) as watch:
        first = next(watch)
    assert (first.type, first.worker.id) == ("registered", mine.id)


def test_start_revision_zero_means_from_now_on(client, node_id):
    capability = node_id("cap")
    client.register_worker(node_id("before"), [capability], 1)
    with client.watch_workers(capabilities=[capability]) as watch:
        assert watch.last_revision == client.get_registry_stats().revision  # pinned, so a reconnect misses nothing
        after = client.register_worker(node_id("after"), [capability], 1)
        event = next(watch)
    assert (event.type, event.worker.id) == ("registered", after.id)


def test_close_from_another_thread_ends_a_blocked_iteration(client, node_id):
    collector = Collector(client.watch_workers(capabilities=[node_id("nothing-happens")]))
    time.sleep(0.3)  # blocked waiting for an event
    collector.close()
    assert collector.error is None and collector.items == []


def test_closing_the_client_ends_its_watches(registry, node_id):
    client = WorkerRegistryClient(registry.address)
    collector = Collector(client.watch_workers(capabilities=[node_id("quiet")]))
    time.sleep(0.3)
    client.close()
    collector.thread.join(10)
    assert not collector.thread.is_alive() and collector.error is None


def test_a_failure_no_retry_can_mend_is_raised_to_the_consumer(client):
    with pytest.raises(RegistryError) as invalid:
        next(client.watch_workers(capabilities=["has space"], start_revision=1))
    assert invalid.value.code_name == "INVALID_ARGUMENT"


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGKILL], ids=["graceful-restart", "crash-restart"])
def test_watch_resumes_after_a_registry_restart_without_repeating_or_skipping(start_registry, node_id, stop_signal):
    server = start_registry()
    with WorkerRegistryClient(server.address) as writer:
        workers = [writer.register_worker(node_id(), ["resume"], 3) for _ in range(3)]
        for worker in workers:
            writer.update_task_count(worker.id, 1)
        before = writer.get_registry_stats().revision

    # Unfiltered and from the first revision: every revision must arrive exactly once, in order.
    watching = WorkerRegistryClient(server.address)
    collector = Collector(watching.watch_workers(start_revision=1))
    collector.wait_for_revision(before)

    server.restart(stop_signal)
    # Written while the watcher is still reconnecting: it must get these from the log.
    with WorkerRegistryClient(server.address) as writer:
        wait_until(lambda: answers(writer), message="the registry to answer again")
        for worker in workers:
            writer.update_task_count(worker.id, -1)
        writer.register_worker(node_id("after-restart"), ["resume"], 1)
        final = writer.get_registry_stats().revision
    assert final > before

    collector.wait_for_revision(final)
    collector.close()
    watching.close()
    assert collector.revisions() == list(range(1, final + 1))
    assert all(isinstance(item, WorkerEvent) for item in collector.items)
    assert collector.watch.reconnects >= 1


def test_out_of_range_yields_one_resync_with_the_workers_then_continues(start_registry, node_id):
    server = start_registry("--event-ttl", "1s")  # events older than a second are pruned every second
    with WorkerRegistryClient(server.address) as client:
        capability = node_id("cap")
        ids = sorted(client.register_worker(node_id(), [capability], 2).id for _ in range(3))
        client.register_worker(node_id("unmatched"), ["other"], 1)

        def first_item_from_revision_one():
            with client.watch_workers(capabilities=[capability], start_revision=1) as probe:
                item = next(probe)
            return item if isinstance(item, Resync) else None

        wait_until(first_item_from_revision_one, timeout_s=30, interval_s=0.5, message="the event log to be pruned")

        with client.watch_workers(capabilities=[capability], start_revision=1) as watch:
            resync = next(watch)
            assert isinstance(resync, Resync) and resync.type == "resync"
            assert resync.revision == client.get_registry_stats().revision
            assert sorted(w.id for w in resync.workers) == ids  # listed with the watch's filter
            newcomer = client.register_worker(node_id("newcomer"), [capability], 1)
            event = next(watch)
        assert (event.type, event.worker.id, event.revision) == ("registered", newcomer.id, resync.revision + 1)


def test_a_response_of_either_form_unpacks_into_its_events_in_order():
    one = service_pb2.WatchWorkersResponse(event=service_pb2.WorkerEvent(revision=7))
    several = service_pb2.WatchWorkersResponse(events=[service_pb2.WorkerEvent(revision=r) for r in (8, 9, 10)])
    assert [e.revision for e in events_of(one)] == [7]
    assert [e.revision for e in events_of(several)] == [8, 9, 10]
    assert events_of(service_pb2.WatchWorkersResponse()) == []


@pytest.mark.parametrize("events_per_message", [0, 1001, 2.5, True])
def test_events_per_message_out_of_range_is_refused_at_once(client, events_per_message):
    with pytest.raises(ValueError, match="events_per_message"):
        client.watch_workers(start_revision=1, events_per_message=events_per_message)


def test_batched_and_one_per_message_watches_deliver_the_same_events_one_at_a_time(client, node_id, monkeypatch):
    asked: List[int] = []
    open_stream = client._calls.open_stream

    def recording_open_stream(method, rpc, request, *args):
        if method == "watch_workers":
            asked.append(request.max_events_per_message)
        return open_stream(method, rpc, request, *args)

    monkeypatch.setattr(client._calls, "open_stream", recording_open_stream)
    since = client.get_registry_stats().revision
    capability = node_id("cap")
    workers = [client.register_worker(node_id(), [capability], 100) for _ in range(3)]
    for i in range(60):
        client.update_task_count(workers[i % 3].id, 1)
    last = client.get_registry_stats().revision
    count = last - since

    received = {}
    for per_message in (1, None):
        options = {} if per_message is None else {"events_per_message": per_message}
        with client.watch_workers(capabilities=[capability], start_revision=since + 1, **options) as watch:
            # Replayed: the registry packs what it reads into messages of up to 256 for the default.
            events = [next(watch) for _ in range(count)]
            assert watch.last_revision == last
        received[per_message] = [(e.revision, e.type, e.worker.id, e.worker.current_tasks) for e in events]
        assert all(isinstance(e, WorkerEvent) for e in events)

    assert asked == [1, 256]
    assert received[None] == received[1]
    assert [revision for revision, *_ in received[1]] == list(range(since + 1, last + 1))
