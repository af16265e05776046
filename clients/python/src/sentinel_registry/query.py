"""Request arguments as protobuf: worker filters, registration labels, drain grace.

What cannot be sent is refused here, before any call: a single string where a
list of strings belongs (a common slip for ``["coder"]``), an unknown health
name, a grace that is not a duration. The rules the registry owns (label
syntax, selector syntax, the grace's range) are left to it, so that its
INVALID_ARGUMENT message, naming the field and the rule, is the one a caller
sees.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Dict, Iterable, List, Mapping, Optional, Union

from google.protobuf import duration_pb2

from ._proto import worker_pb2
from .models import health_name

HealthQuery = Union[None, str, Iterable[str]]
"""A health name (``"healthy"``, ``"degraded"``, ``"unhealthy"``), several, or None for any."""

Grace = Union[None, timedelta, int, float]
"""A drain's grace: a ``timedelta`` or a number of seconds; None for the registry's default (10 minutes)."""

_HEALTH_VALUES: Mapping[str, int] = {
    health_name(value): value
    for value in (worker_pb2.HEALTH_STATUS_HEALTHY, worker_pb2.HEALTH_STATUS_DEGRADED, worker_pb2.HEALTH_STATUS_UNHEALTHY)
}


def health_values(health: HealthQuery) -> List[int]:
    """Protobuf values for a health name or names (None: no condition).

    Raises:
        ValueError: for anything but "healthy", "degraded" or "unhealthy".
    """
    if health is None:
        return []
    names = [health] if isinstance(health, str) else list(health)
    values = []
    for name in names:
        value = _HEALTH_VALUES.get(name)
        if value is None:
            raise ValueError(f"health must be one of healthy, degraded, unhealthy; got {name!r}")
        values.append(value)
    return values


def string_list(name: str, values: Optional[Iterable[str]]) -> List[str]:
    """``values`` as a list, refusing a single string.

    Raises:
        TypeError: if ``values`` is a string.
    """
    if isinstance(values, str):
        raise TypeError(f"{name} must be a list of strings, not the string {values!r}")
    return list(values or ())


def labels(values: Optional[Mapping[str, str]]) -> Dict[str, str]:
    """Registration labels as a dict of strings (None: no labels).

    Raises:
        TypeError: if ``values`` is not a mapping, or a key or value is not a string.
    """
    if values is None:
        return {}
    if not isinstance(values, Mapping):
        raise TypeError(f"labels must be a mapping of strings to strings, such as {{'zone': 'eu-1'}}, got {values!r}")
    for key, value in values.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"labels must map strings to strings, got {key!r}: {value!r}")
    return dict(values)


def worker_filter(
    capabilities: Optional[Iterable[str]] = None,
    health: HealthQuery = None,
    min_available_capacity: int = 0,
    label_selector: str = "",
    versions: Optional[Iterable[str]] = None,
) -> "worker_pb2.WorkerFilter":
    """A WorkerFilter message from the query arguments every listing call takes.

    ``label_selector`` is sent as written: the registry parses it and answers
    INVALID_ARGUMENT naming the position of a syntax error.

    Raises:
        TypeError: if ``capabilities`` or ``versions`` is a single string, or
            ``label_selector`` is not a string.
        ValueError: for an unknown health name.
    """
    if not isinstance(label_selector, str):
        raise TypeError(f"label_selector must be a string such as 'zone=eu-1,gpu in (a100)', got {label_selector!r}")
    return worker_pb2.WorkerFilter(
        capabilities=string_list("capabilities", capabilities),
        health_statuses=health_values(health),
        min_available_capacity=min_available_capacity,
        label_selector=label_selector,
        versions=string_list("versions", versions),
    )


def grace_duration(grace: Grace) -> Optional[duration_pb2.Duration]:
    """A drain's grace as a protobuf Duration; None leaves it unset (the registry's 10 minutes).

    Whether it is within the registry's range (1 second to 7 days) is the
    registry's to say (INVALID_ARGUMENT).

    Raises:
        TypeError: if ``grace`` is neither a timedelta nor a number of seconds.
        ValueError: if it is not finite.
    """
    if grace is None:
        return None
    if isinstance(grace, timedelta):
        seconds = grace.total_seconds()
    elif isinstance(grace, (int, float)) and not isinstance(grace, bool):
        seconds = float(grace)
    else:
        raise TypeError(f"grace must be a timedelta or a number of seconds, got {grace!r}")
    if not math.isfinite(seconds):
        raise ValueError(f"grace must be finite, got {grace!r}")
    duration = duration_pb2.Duration()
    duration.FromNanoseconds(round(seconds * 1e9))
    return duration
