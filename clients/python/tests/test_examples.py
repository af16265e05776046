"""The usage guide's three examples, in Python, run as a user runs them against a real registry.

Each runs in Debian's Python with only clients/python/src on PYTHONPATH. The
printed lines are checked against what the guide shows.
"""

from __future__ import annotations

import re
import signal
import subprocess
import threading

import pytest

from registry_server import DEBIAN_PYTHON, EXAMPLES, REPO_ROOT, debian_python_env, run_debian_python, wait_until
from sentinel_registry import RegistryError, WorkerRegistryClient

WORKER_ID = r"worker-\d+-[a-z0-9]+"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """A fresh registry: the dashboard reads what the complete example left behind."""
    from registry_server import RegistryServer

    server = RegistryServer(tmp_path_factory.mktemp("examples") / "registry.db").start()
    yield server
    server.stop()


def run_example(name: str, fleet, **env: str) -> subprocess.CompletedProcess:
    return run_debian_python([str(EXAMPLES / name)], REGISTRY_ADDRESS=fleet.address, **env)


def worker_block(stdout: str, node_id: str) -> str:
    for block in re.split(r"\n(?=Worker: )", stdout):
        if f"  Node: {node_id}\n" in block:
            return block
    raise AssertionError(f"no block for {node_id} in:\n{stdout}")


def test_complete_example_registers_two_workers_runs_a_task_on_the_best_coder_and_prints_every_worker(fleet):
    run = run_example("complete_example.py", fleet, EXAMPLE_TASK_MS="50")
    assert (run.returncode, run.stderr) == (0, "")
    lines = run.stdout.split("\n")
    assert lines[0] == "Assigning tasks..."
    assert re.fullmatch(f"Selected worker: {WORKER_ID}", lines[1])
    assert lines[2] == "Task completed successfully"
    selected = lines[1][len("Selected worker: ") :]

    coder = worker_block(run.stdout, "coder-1")
    assert f"Worker: {selected}\n" in coder
    for line in ["  Capabilities: coder, tester", "  Health: healthy", "  Tasks: 1/5", "  Completed: 1", "  Failed: 0", "  Avg Duration: 50ms"]:
        assert line + "\n" in coder  # the guide assigns the task and records it, but never counts it down

    reviewer = worker_block(run.stdout, "reviewer-1")
    assert re.match(f"Worker: {WORKER_ID}\n", reviewer)
    for line in ["  Capabilities: reviewer", "  Health: healthy", "  Tasks: 0/3", "  Completed: 0", "  Avg Duration: 0ms"]:
        assert line + "\n" in reviewer


def test_monitoring_dashboard_prints_counts_capacity_success_rate_and_top_performers(fleet):
    run = run_example("monitoring_dashboard.py", fleet)
    assert (run.returncode, run.stderr) == (0, "")
    # coder-1: 0.5 x 4/5 + 0.3 x 1 + 0.2 x min(1, 1000/50); reviewer-1: 0.5 x 1 + priors 0.3 x 0.5 + 0.2 x 0.5.
    assert run.stdout == "\n".join(
        [
            "",
            "=== Worker Dashboard ===",
            "",
            "Healthy: 2",
            "Degraded: 0",
            "Unhealthy: 0",
            "",
            "Capacity: 1/8 (7 available)",
            "",
            "Tasks: 1 completed, 0 failed",
            "Success Rate: 100.0%",
            "",
            "Top Performers:",
            "  1. coder-1 (priority: 0.900)",
            "  2. reviewer-1 (priority: 0.750)",
            "",
        ]
    )


def start_worker_node_example(fleet, **env):
    """Starts the Worker Node example; returns the process, its output lines (filled as it prints) and its worker id."""
    child = subprocess.Popen(
        [DEBIAN_PYTHON, "-s", str(EXAMPLES / "worker_node.py")],
        env=debian_python_env(REGISTRY_ADDRESS=fleet.address, **env),
        cwd=str(REPO_ROOT),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(child.stdout), daemon=True)
    reader.start()
    try:
        wait_until(lambda: len(lines) >= 2, timeout_s=30, message="the example's first task")
        match = re.fullmatch(f"Worker ({WORKER_ID}) started\n", lines[0])
        assert match, lines
        assert lines[1] == "Executing task: {'kind': 'example'}\n"
    except BaseException:
        child.kill()
        child.wait()
        raise
    return child, lines, reader, match.group(1)


def test_worker_node_starts_runs_a_task_stays_registered_and_unregisters_on_sigterm(fleet):
    child, lines, reader, worker_id = start_worker_node_example(fleet)
    try:
        wait_until(lambda: any(line.startswith("Task completed in ") for line in lines), timeout_s=30, message="the task to end")
        with WorkerRegistryClient(fleet.address) as client:
            worker = client.get_worker(worker_id)
            assert (worker.node_id, worker.current_tasks, worker.metrics.tasks_completed) == ("coder-node-1", 0, 1)
            child.send_signal(signal.SIGTERM)
            assert child.wait(30) == 0
            reader.join(10)
            assert lines[-1] == f"Worker {worker_id} stopped\n"
            with pytest.raises(RegistryError) as gone:
                client.get_worker(worker_id)
            assert gone.value.code_name == "NOT_FOUND"
        assert child.stderr.read() == ""
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_worker_node_drained_while_idle_exits_by_itself_without_registering_again(fleet):
    child, lines, reader, worker_id = start_worker_node_example(fleet)
    try:
        wait_until(lambda: any(line.startswith("Task completed in ") for line in lines), timeout_s=30, message="the task to end")
        with WorkerRegistryClient(fleet.address) as client:
            since = client.get_registry_stats().revision
            client.drain_worker(worker_id)  # idle: the registry removes it in this call and ends its heartbeat stream
            assert child.wait(30) == 0  # no signal, and no heartbeat for minutes: the stream's end says why
            reader.join(10)
            assert lines[-1] == f"Worker {worker_id} drained\n"
            assert [worker for worker in client.discover_workers() if worker.node_id == "coder-node-1"] == []  # not back as a new worker
            with client.watch_workers(start_revision=since + 1) as watch:
                removal = next(event for event in watch if event.worker.id == worker_id and event.type == "unregistered")
            assert removal.removal_reason == "drained"
        assert child.stderr.read() == ""  # no re-registration warning
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_worker_node_drained_while_busy_finishes_its_task_is_removed_and_exits_by_itself(fleet):
    child, lines, reader, worker_id = start_worker_node_example(fleet, EXAMPLE_TASK_MS="1500")
    try:
        with WorkerRegistryClient(fleet.address) as client:
            since = client.get_registry_stats().revision
            assert client.get_worker(worker_id).current_tasks == 1  # the task is running
            client.drain_worker(worker_id)
            assert child.wait(30) == 0  # no signal: the drain ends the process
            reader.join(10)
            assert re.fullmatch(r"Task completed in \d+ms\n", lines[2]), lines
            assert lines[3:] == [f"Worker {worker_id} drained\n"]
            with client.watch_workers(start_revision=since + 1) as watch:
                removal = next(event for event in watch if event.worker.id == worker_id and event.type == "unregistered")
            assert removal.removal_reason == "drained"
            assert removal.worker.metrics.tasks_completed == 1  # its task was recorded before it left
        assert child.stderr.read() == ""
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
