"""The usage guide's Complete Example, in Python, against a registry server.

The steps and the printed lines are the guide's. The registry runs as a
server (REGISTRY_ADDRESS, default localhost:50051) and cleans up expired
workers itself, so there is no start_cleanup()/stop_cleanup(). The simulated
task takes EXAMPLE_TASK_MS milliseconds (default the guide's 5000).

Run: PYTHONPATH=clients/python/src /usr/bin/python3 clients/python/examples/complete_example.py
"""

import os
import time

from sentinel_registry import WorkerRegistryClient

task_ms = int(os.environ.get("EXAMPLE_TASK_MS", "5000"))


def main():
    # Initialize
    registry = WorkerRegistryClient(os.environ.get("REGISTRY_ADDRESS", "localhost:50051"))

    # Register workers
    worker1 = registry.register_worker(
        node_id="coder-1",
        capabilities=["coder", "tester"],
        max_concurrent_tasks=5,
    )

    worker2 = registry.register_worker(
        node_id="reviewer-1",
        capabilities=["reviewer"],
        max_concurrent_tasks=3,
    )

    # Simulate task assignment and completion
    print("Assigning tasks...")

    # Get best worker for coding task
    workers = registry.get_workers_for_load_balancing(
        capabilities=["coder"],
        health=["healthy"],
        min_available_capacity=1,
    )

    if workers:
        selected_worker = workers[0]
        print(f"Selected worker: {selected_worker.id}")

        # Assign task
        registry.update_task_count(selected_worker.id, 1)

        # Simulate task execution
        time.sleep(task_ms / 1000)

        # Complete task successfully
        registry.record_task_completion(selected_worker.id, True, task_ms)
        print("Task completed successfully")

    # Check worker status
    all_workers = registry.discover_workers()
    for worker in all_workers:
        print(f"""
Worker: {worker.id}
  Node: {worker.node_id}
  Capabilities: {', '.join(worker.capabilities)}
  Health: {worker.health_status}
  Tasks: {worker.current_tasks}/{worker.max_concurrent_tasks}
  Completed: {worker.metrics.tasks_completed}
  Failed: {worker.metrics.tasks_failed_count}
  Avg Duration: {worker.metrics.average_task_duration_ms:g}ms
    """)

    # Cleanup
    registry.close()


if __name__ == "__main__":
    main()
