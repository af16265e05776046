"""The usage guide's Monitoring Dashboard Example, in Python, against a registry server.

The function and its printed lines are the guide's; the construction line
(REGISTRY_ADDRESS, default localhost:50051) and the call at the end are what
a runnable file adds. get_registry_stats() gives the same totals in one call.

Run: PYTHONPATH=clients/python/src /usr/bin/python3 clients/python/examples/monitoring_dashboard.py
"""

import os

from sentinel_registry import WorkerRegistryClient

registry = WorkerRegistryClient(os.environ.get("REGISTRY_ADDRESS", "localhost:50051"))


def display_worker_dashboard():
    workers = registry.discover_workers()

    print("\n=== Worker Dashboard ===\n")

    # Group by health status
    by_health = {
        "healthy": [w for w in workers if w.health_status == "healthy"],
        "degraded": [w for w in workers if w.health_status == "degraded"],
        "unhealthy": [w for w in workers if w.health_status == "unhealthy"],
    }

    print(f"Healthy: {len(by_health['healthy'])}")
    print(f"Degraded: {len(by_health['degraded'])}")
    print(f"Unhealthy: {len(by_health['unhealthy'])}")

    # Total capacity
    total_capacity = sum(w.max_concurrent_tasks for w in workers)
    used_capacity = sum(w.current_tasks for w in workers)
    available_capacity = total_capacity - used_capacity

    print(f"\nCapacity: {used_capacity}/{total_capacity} ({available_capacity} available)")

    # Overall metrics
    total_completed = sum(w.metrics.tasks_completed for w in workers)
    total_failed = sum(w.metrics.tasks_failed_count for w in workers)
    # The guide divides by zero before the first completion (NaN in JavaScript); say so instead.
    success_rate = total_completed / (total_completed + total_failed) * 100 if total_completed + total_failed else float("nan")

    print(f"\nTasks: {total_completed} completed, {total_failed} failed")
    print(f"Success Rate: {success_rate:.1f}%")

    # Top performers
    by_priority = registry.get_workers_for_load_balancing()
    print("\nTop Performers:")
    for i, w in enumerate(by_priority[:5]):
        print(f"  {i + 1}. {w.node_id} (priority: {w.priority:.3f})")


if __name__ == "__main__":
    try:
        display_worker_dashboard()
    finally:
        registry.close()
