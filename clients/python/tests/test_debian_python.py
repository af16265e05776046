"""The client as a user installs it: Debian's Python and packages, and only clients/python/src on PYTHONPATH.

The script below runs from an empty folder outside the repository, in
/usr/bin/python3 without user site-packages and with no PYTHON* variable but
PYTHONPATH: it registers a WorkerNode, runs tasks, acquires and releases a
slot, and receives watch events.
"""

from __future__ import annotations

import json
import textwrap

from registry_server import PYTHON_SRC, run_debian_python

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import google.protobuf, grpc
    import sentinel_registry
    from sentinel_registry import WorkerNode, WorkerRegistryClient

    address = sys.argv[1]
    report = {
        "python": sys.version_info[:2],
        "modules": {m.__name__: m.__file__ for m in (grpc, google.protobuf, sentinel_registry)},
        "versions": {"grpc": grpc.__version__, "protobuf": google.protobuf.__version__},
    }
    registry = WorkerRegistryClient(address)
    watch = registry.watch_workers(capabilities=["gpu"])  # from now on
    with WorkerNode(address, "gpu-node-1", ["gpu"], 2) as node:
        report["tasks"] = [node.run_task(pow, 2, n) for n in range(3)]
        acquired = registry.acquire_worker(capabilities=["gpu"])
        report["acquired"] = {"worker": acquired.worker.id == node.worker_id, "current_tasks": acquired.worker.current_tasks}
        report["released"] = registry.release_worker(acquired.reservation_id, True, 20.0)
        report["metrics"] = registry.get_worker(node.worker_id).metrics.tasks_completed
    report["events"] = []
    for event in watch:
        report["events"].append([event.type, event.worker.current_tasks])
        if event.type == "unregistered":
            break
    watch.close()
    registry.close()
    print(json.dumps(report))
    """
)


def test_a_script_with_only_clients_python_src_on_pythonpath_uses_node_slots_and_watch(start_registry, tmp_path):
    server = start_registry()
    script = tmp_path / "fleet.py"
    script.write_text(SCRIPT)
    run = run_debian_python([str(script), server.address], cwd=str(tmp_path))
    assert (run.returncode, run.stderr) == (0, "")
    report = json.loads(run.stdout)

    assert report["python"] == [3, 11]
    modules = report["modules"]
    assert modules["grpc"].startswith("/usr/lib/python3/dist-packages/"), modules  # Debian's python3-grpcio
    assert modules["google.protobuf"].startswith("/usr/lib/python3/dist-packages/"), modules  # Debian's python3-protobuf
    assert modules["sentinel_registry"].startswith(str(PYTHON_SRC)), modules
    assert report["versions"]["grpc"].startswith("1.51.")
    assert report["versions"]["protobuf"].startswith("4.21.")  # the Python package of protobuf 3.21

    assert report["tasks"] == [1, 2, 4]
    assert report["acquired"] == {"worker": True, "current_tasks": 1}
    assert report["released"] == "released"
    assert report["metrics"] == 4  # three tasks and the released slot
    # registered; each task: up, completion, down; the slot: taken, released; stop() drains (state_changed,
    # and the idle worker is removed at once); unregistered.
    assert report["events"] == [["registered", 0]] + [["updated", 1], ["updated", 1], ["updated", 0]] * 3 + [
        ["updated", 1],
        ["updated", 0],
        ["state_changed", 0],
        ["unregistered", 0],
    ]
