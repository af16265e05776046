"""RegistryError on its own, without a server: the removal reason read from the trailing metadata, and what it means for a node."""

from __future__ import annotations

import grpc
import pytest

from sentinel_registry import RegistryError
from sentinel_registry.errors import drain_removal, record_lost


class FailedCall(grpc.RpcError, grpc.Call):
    """A failed call as grpc raises it: an RpcError that is also a grpc.Call."""

    def __init__(self, code, details, trailing_metadata):
        self._code, self._details, self._trailing = code, details, trailing_metadata

    def code(self):
        return self._code

    def details(self):
        return self._details

    def trailing_metadata(self):
        return self._trailing

    def initial_metadata(self):
        return ()

    def is_active(self):
        return False

    def time_remaining(self):
        return None

    def cancel(self):
        return False

    def add_callback(self, callback):
        return False


def test_the_removal_reason_is_read_from_the_trailer_of_the_failed_call():
    call = FailedCall(
        grpc.StatusCode.NOT_FOUND,
        "worker worker-1-abc not found: it was drained and removed once its tasks finished",
        (("sentinel-removal-reason", "drained"), ("other", "x")),
    )
    error = RegistryError.from_rpc_error("heartbeat", call)
    assert (error.code_name, error.removal_reason) == ("NOT_FOUND", "drained")
    assert error.__cause__ is call
    assert str(error) == "worker worker-1-abc not found: it was drained and removed once its tasks finished"


@pytest.mark.parametrize(
    "trailing, reason",
    [
        ((), None),
        ((("other", "drained"),), None),
        ((("sentinel-removal-reason", ""),), None),
        ((("Sentinel-Removal-Reason", "expired"),), "expired"),
        ((("sentinel-removal-reason", b"drain_deadline"),), "drain_deadline"),
    ],
)
def test_a_missing_or_empty_trailer_is_no_reason_and_keys_and_bytes_are_read_leniently(trailing, reason):
    assert RegistryError("heartbeat", grpc.StatusCode.NOT_FOUND, "worker w not found", trailing).removal_reason == reason


@pytest.mark.parametrize(
    "code, details, reason, removed_by_drain",
    [
        (grpc.StatusCode.NOT_FOUND, "worker w not found: it was drained and removed once its tasks finished", "drained", "drained"),
        (grpc.StatusCode.NOT_FOUND, "worker w not found: it was drained and removed at its drain deadline", "drain_deadline", "drain_deadline"),
        # With authentication on, the removed worker's own token is refused, saying why.
        (
            grpc.StatusCode.UNAUTHENTICATED,
            "worker w not found: it was drained and removed once its tasks finished; its token is no longer valid",
            "drained",
            "drained",
        ),
        # Lost any other way: the node registers again.
        (grpc.StatusCode.NOT_FOUND, "worker w not found: cleanup removed it after its heartbeats stopped", "expired", None),
        (grpc.StatusCode.NOT_FOUND, "worker w not found: a new registration of its node_id replaced it", "replaced", None),
        (grpc.StatusCode.NOT_FOUND, "worker w not found: it was unregistered", "unregistered", None),
        (grpc.StatusCode.NOT_FOUND, "worker w not found", None, None),
        # A trailer on a failure that does not say the record is gone is not a removal.
        (grpc.StatusCode.UNAVAILABLE, "registry is shutting down; reconnect", "drained", None),
    ],
)
def test_only_a_lost_record_with_a_drains_reason_is_a_drains_removal(code, details, reason, removed_by_drain):
    trailing = () if reason is None else (("sentinel-removal-reason", reason),)
    error = RegistryError("heartbeat", code, details, trailing)
    assert error.removal_reason == reason
    assert drain_removal(error) == removed_by_drain
    if removed_by_drain is not None:
        assert record_lost(error)
