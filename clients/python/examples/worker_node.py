"""The usage guide's Worker Node Implementation, in Python, against a registry server.

The guide writes its WorkerNode by hand: register, a heartbeat timer,
count a task up, record its completion, unregister on stop. The client's
WorkerNode does all of that, and what the guide leaves out: it holds the
heartbeat stream at the interval the registry asks for, reconnects after a
registry restart, registers again if its record was removed, and always
counts a task back down. The usage section is the guide's: start, process
tasks until the process is asked to stop (SIGTERM or SIGINT), stop; stop()
drains first, so running tasks finish and no new one is taken meanwhile. An
operator's drain (drain_worker) ends the process by itself: at once when the
worker is idle, once its task is done when it is busy. Its task takes
EXAMPLE_TASK_MS milliseconds (default 0).

Run: PYTHONPATH=clients/python/src /usr/bin/python3 clients/python/examples/worker_node.py
"""

import logging
import os
import signal
import threading
import time

from sentinel_registry import WorkerNode


def perform_task(task):
    # Task execution logic here
    print("Executing task:", task, flush=True)
    time.sleep(int(os.environ.get("EXAMPLE_TASK_MS", "0")) / 1000)


def execute_task(worker, task):
    start_time = time.monotonic()
    try:
        # Counted up, run, recorded with its duration, counted down.
        worker.run_task(perform_task, task)
        print(f"Task completed in {(time.monotonic() - start_time) * 1000:.0f}ms", flush=True)
    except Exception as error:
        print(f"Task failed after {(time.monotonic() - start_time) * 1000:.0f}ms: {error}", flush=True)
        raise


def main():
    # Reconnects and re-registrations are logged as warnings.
    logging.basicConfig(level=logging.WARNING)

    # Usage
    stopping = threading.Event()
    worker = WorkerNode(
        os.environ.get("REGISTRY_ADDRESS", "localhost:50051"),
        "coder-node-1",
        ["coder", "tester"],
        5,
        on_drained=lambda worker_id: stopping.set(),  # drained by an operator: nothing left to do
    )
    worker.start()
    print(f"Worker {worker.worker_id} started", flush=True)

    # Worker processes tasks... until the process is asked to stop, or drained.
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    execute_task(worker, {"kind": "example"})
    while not stopping.wait(1):
        pass

    worker.stop()  # drains first; after a drain, returns at once
    print(f"Worker {worker.worker_id} {'drained' if worker.drained else 'stopped'}", flush=True)


if __name__ == "__main__":
    main()
