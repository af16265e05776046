"""WorkerNode and drains against a real registry: the registry's drain, stop() draining first, labels kept across re-registration."""

from __future__ import annotations

import threading
import time

import pytest

from registry_server import wait_until
from sentinel_registry import RegistryError, WorkerDrainingError, WorkerEvent, WorkerNode, WorkerRegistryClient
from sentinel_registry import heartbeat_loop
from sentinel_registry.heartbeat_stream import HeartbeatStream

class Watcher:
    """Every event of the registry from now on, collected on a thread of its own."""

    def __init__(self, client: WorkerRegistryClient) -> None:
        self.events = []
        self._watch = client.watch_workers()
        self._thread = threading.Thread(target=lambda: self.events.extend(self._watch), daemon=True)
        self._thread.start()

    def of_node(self, node_id):
        return [(e.type, e.removal_reason) for e in list(self.events) if isinstance(e, WorkerEvent) and e.worker.node_id == node_id]

    def wait_for(self, node_id, event, timeout_s=20.0):
        wait_until(lambda: event in self.of_node(node_id), timeout_s, message=f"{event} for {node_id}")

    def close(self):
        self._watch.close()
        self._thread.join(10)


@pytest.fixture
def watcher(observer):
    watcher = Watcher(observer)
    yield watcher
    watcher.close()


class BlockingTask:
    """A task that runs until released, on a thread of its own, through node.run_task."""

    def __init__(self, node: WorkerNode) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.outcome = []
        self.thread = threading.Thread(target=self._run, args=(node,), daemon=True)
        self.thread.start()
        assert self.started.wait(10), "the task did not start"

    def _run(self, node):
        try:
            self.outcome.append(("returned", node.run_task(self._body)))
        except BaseException as error:  # noqa: BLE001 - reported to the test
            self.outcome.append(("raised", error))

    def _body(self):
        self.started.set()
        assert self.release.wait(30), "the test never released the task"
        return "finished"

    def finish(self):
        self.release.set()
        self.thread.join(10)
        return self.outcome


def node_for(registry, node_id, **options):
    options.setdefault("reconnect_base_s", 0.05)
    options.setdefault("reconnect_max_s", 0.5)
    return WorkerNode(registry.address, node_id, ["coder"], 2, **options)


def test_a_drained_node_finishes_its_running_task_refuses_new_ones_and_is_removed_as_drained(fast_registry, observer, watcher, node_id, thread_failures):
    drained = []
    node = node_for(fast_registry, node_id(), on_drained=drained.append)
    node.start()
    assert node.wait_connected(10)
    worker_id = node.worker_id
    task = BlockingTask(node)

    observer.drain_worker(worker_id, grace=60)
    wait_until(lambda: node.state == "draining", message="the node to hear of the drain")
    assert node.drain_deadline is not None
    with pytest.raises(WorkerDrainingError) as refused:
        node.run_task(lambda: "never runs")
    assert refused.value.worker_id == worker_id and "is draining" in str(refused.value)
    assert observer.get_worker(worker_id).current_tasks == 1  # the running task is still counted
    assert not node.drained

    assert task.finish() == [("returned", "finished")]
    assert node.wait_drained(10)
    assert drained == [worker_id]
    assert node.state == "stopped"
    watcher.wait_for(node.node_id, ("unregistered", "drained"))
    with pytest.raises(WorkerDrainingError, match="has drained"):
        node.run_task(lambda: "never runs")
    assert node.stop() is True  # already done: returns at once
    time.sleep(1)  # several heartbeat intervals: a node that re-registered would have done so by now
    events = watcher.of_node(node.node_id)
    assert [event for event in events if event[0] == "registered"] == [("registered", None)]
    assert ("state_changed", None) in events and events[-1] == ("unregistered", "drained")
    assert thread_failures == []


def test_a_drain_is_heard_from_the_last_tasks_bookkeeping_when_no_heartbeat_reply_comes_first(start_registry, node_id, thread_failures):
    registry = start_registry()  # the default interval: the next heartbeat reply is minutes away
    with WorkerRegistryClient(registry.address) as observer:
        watcher = Watcher(observer)
        try:
            node = node_for(registry, node_id())
            node.start()
            assert node.wait_connected(10)
            task = BlockingTask(node)
            observer.drain_worker(node.worker_id)
            assert node.state == "running"  # nothing has told the node yet
            assert task.finish() == [("returned", "finished")]  # its completion's answer says draining
            assert node.wait_drained(10)
            watcher.wait_for(node.node_id, ("unregistered", "drained"))
            time.sleep(0.5)
            assert [event for event in watcher.of_node(node.node_id) if event[0] == "registered"] == [("registered", None)]
        finally:
            watcher.close()
    assert thread_failures == []


def test_an_idle_node_drained_by_an_operator_leaves_and_never_registers_again(fast_registry, observer, watcher, node_id, thread_failures):
    drained = []
    node = node_for(fast_registry, node_id(), on_drained=lambda worker_id: drained.append((worker_id, node.removal_reason)))
    node.start()
    assert node.wait_connected(10)
    worker_id = node.worker_id
    observer.drain_worker(worker_id)  # idle: the registry removes it in this call
    assert node.wait_drained(10), "the node did not notice its drain"
    assert drained == [(worker_id, "drained")]
    assert (node.state, node.removal_reason, node.worker_id) == ("stopped", "drained", worker_id)
    time.sleep(1)  # five heartbeat intervals: a node that re-registered would have done so by now
    assert [event for event in watcher.of_node(node.node_id) if event[0] == "registered"] == [("registered", None)]
    assert watcher.of_node(node.node_id)[-1] == ("unregistered", "drained")
    assert observer.discover_workers(capabilities=["coder"]) == []
    with pytest.raises(WorkerDrainingError, match="has drained"):
        node.run_task(lambda: "never runs")
    assert thread_failures == []


def test_an_idle_node_hears_its_drain_from_the_end_of_its_stream_not_its_next_heartbeat(start_registry, node_id, thread_failures):
    registry = start_registry()  # the default interval: the next heartbeat is minutes away
    with WorkerRegistryClient(registry.address) as observer:
        node = node_for(registry, node_id())
        node.start()
        assert node.wait_connected(10)
        drained_at = time.monotonic()
        observer.drain_worker(node.worker_id)
        assert node.wait_drained(10), "the node did not hear the registry end its stream"
        assert time.monotonic() - drained_at < 5
        assert node.removal_reason == "drained"
        time.sleep(0.5)
        assert observer.discover_workers(capabilities=["coder"]) == []
    assert thread_failures == []


def test_a_busy_node_removed_at_its_drain_deadline_finishes_its_task_and_leaves_saying_so(start_registry, node_id, thread_failures):
    registry = start_registry()  # the default interval: the node hears nothing from a heartbeat reply meanwhile
    with WorkerRegistryClient(registry.address) as observer:
        watcher = Watcher(observer)
        try:
            drained = []
            node = node_for(registry, node_id(), on_drained=lambda worker_id: drained.append((worker_id, node.removal_reason)))
            node.start()
            assert node.wait_connected(10)
            worker_id = node.worker_id
            task = BlockingTask(node)
            observer.drain_worker(worker_id, grace=1)
            # At the deadline the registry removes the worker and ends its stream, saying why.
            wait_until(lambda: node.removal_reason == "drain_deadline", 10, message="the node to hear of its removal at the deadline")
            assert node.state == "draining" and not node.drained
            with pytest.raises(WorkerDrainingError):
                node.run_task(lambda: "never runs")
            assert task.finish() == [("returned", "finished")]  # the bookkeeping is skipped: the record is gone
            assert node.wait_drained(10)
            assert drained == [(worker_id, "drain_deadline")]
            assert node.state == "stopped"
            time.sleep(0.5)
            events = watcher.of_node(node.node_id)
            assert [event for event in events if event[0] == "registered"] == [("registered", None)]
            assert events[-1] == ("unregistered", "drain_deadline")
            assert observer.discover_workers(capabilities=["coder"]) == []
        finally:
            watcher.close()
    assert thread_failures == []


def test_a_task_whose_count_is_refused_by_a_drains_removal_is_refused_as_draining_and_the_node_leaves(start_registry, node_id, monkeypatch, thread_failures):
    # As if the registry had not ended the stream (another replica has not applied the drain yet):
    # the node, idle, with its next heartbeat minutes away, learns of the drain from the task's count.
    monkeypatch.setattr(heartbeat_loop, "HeartbeatStream", lambda *args, on_end=None: HeartbeatStream(*args))
    registry = start_registry()
    with WorkerRegistryClient(registry.address) as observer:
        node = node_for(registry, node_id())
        node.start()
        assert node.wait_connected(10)
        observer.drain_worker(node.worker_id)  # idle: removed at once
        time.sleep(0.5)
        assert node.state == "running"  # nothing has told the node yet
        ran = []
        with pytest.raises(WorkerDrainingError, match="has drained") as refused:
            node.run_task(lambda: ran.append("ran"))
        assert ran == []
        assert isinstance(refused.value.__cause__, RegistryError) and refused.value.__cause__.removal_reason == "drained"
        assert node.wait_drained(10)
        assert node.removal_reason == "drained"
        time.sleep(0.5)
        assert observer.discover_workers(capabilities=["coder"]) == []
    assert thread_failures == []


def test_stop_drains_first_the_running_task_finishes_and_the_worker_is_removed_as_drained(fast_registry, observer, watcher, node_id):
    node = node_for(fast_registry, node_id())
    node.start()
    assert node.wait_connected(10)
    task = BlockingTask(node)
    stopped = []
    stopper = threading.Thread(target=lambda: stopped.append(node.stop()), daemon=True)
    stopper.start()
    wait_until(lambda: node.state == "draining", message="stop() to start the drain")
    with pytest.raises(WorkerDrainingError):
        node.run_task(lambda: "never runs")
    wait_until(lambda: observer.get_worker(node.worker_id).state == "draining", message="the registry to mark the worker draining")
    assert observer.get_workers_for_load_balancing(["coder"]) == []  # out of rotation while the task finishes
    assert stopped == []

    assert task.finish() == [("returned", "finished")]
    stopper.join(10)
    assert stopped == [True]
    assert node.state == "stopped" and not node.drained  # drained reports the registry's drains, not stop()
    watcher.wait_for(node.node_id, ("unregistered", "drained"))
    with pytest.raises(RuntimeError, match="needs a running node"):
        node.run_task(lambda: "never runs")


def test_stop_unregisters_anyway_when_a_task_outlives_the_drain_timeout(fast_registry, observer, watcher, node_id):
    node = node_for(fast_registry, node_id(), drain_timeout_s=0.3)
    node.start()
    assert node.wait_connected(10)
    task = BlockingTask(node)
    started = time.monotonic()
    assert node.stop() is True  # unregistered 0.3 s after the drain began, before the registry's 1 s deadline
    assert 0.3 <= time.monotonic() - started < 5
    watcher.wait_for(node.node_id, ("unregistered", "unregistered"))
    assert task.finish() == [("returned", "finished")]  # the task's bookkeeping is skipped: its record is gone


def test_labels_and_version_are_registered_and_kept_across_re_registration(fast_registry, observer, node_id):
    labels = {"zone": "eu-1", "gpu": "a100"}
    with node_for(fast_registry, node_id(), labels=labels, version="2.1.0") as node:
        assert node.wait_connected(10)
        first_id = node.worker_id
        registered = observer.get_worker(first_id)
        assert (registered.labels, registered.version) == (labels, "2.1.0")
        observer.unregister_worker(first_id)  # as cleanup would
        new_id = wait_until(lambda: node.worker_id if node.worker_id != first_id else None, message="re-registration")
        again = observer.get_worker(new_id)
        assert (again.labels, again.version, again.state) == (labels, "2.1.0", "active")
        assert [w.id for w in observer.discover_workers(label_selector="zone=eu-1,gpu in (a100)", versions=["2.1.0"])] == [new_id]
