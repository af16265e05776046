"""The resuming iterator behind ``WorkerRegistryClient.watch_workers``."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Iterator, List

import grpc

from . import models
from .backoff import Backoff
from .errors import RegistryError
from .models import Resync, WatchItem

if TYPE_CHECKING:
    from .client import WorkerRegistryClient

log = logging.getLogger("sentinel_registry.watch")

#: How many events a watch asks the registry to pack into one message by
#: default: fewer, larger writes cost the registry far less CPU per event, and
#: the watch still delivers them one at a time.
DEFAULT_EVENTS_PER_MESSAGE = 256
#: The most events per message the registry accepts (its max_events_per_message limit).
MAX_EVENTS_PER_MESSAGE = 1000

# Failures after which the same watch can go on: the registry restarting or
# unreachable (UNAVAILABLE), a watcher that fell behind or a full server
# (RESOURCE_EXHAUSTED), a stream cut by something in between.
_RESUMABLE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.CANCELLED,
    }
)


def events_of(response) -> List:
    """The WorkerEvent messages a WatchWorkersResponse carries, in order: its ``event``, or its ``events`` when batched."""
    if response.HasField("event"):
        return [response.event, *response.events]
    return list(response.events)


class WorkerWatch:
    """An iterator of :class:`~sentinel_registry.WorkerEvent` and :class:`~sentinel_registry.Resync` items.

    Made by :meth:`WorkerRegistryClient.watch_workers`; see there for what it
    delivers. Iterating blocks until the next item. ``close()`` ends it, also
    from another thread; so does leaving a ``with`` block or closing the client.
    """

    def __init__(
        self,
        client: "WorkerRegistryClient",
        watch_filter,
        start_revision: int,
        backoff: Backoff,
        events_per_message: int = DEFAULT_EVENTS_PER_MESSAGE,
    ) -> None:
        if start_revision < 0:
            raise ValueError(f"start_revision must be >= 0, got {start_revision}")
        if isinstance(events_per_message, bool) or not isinstance(events_per_message, int) or not 1 <= events_per_message <= MAX_EVENTS_PER_MESSAGE:
            raise ValueError(f"events_per_message must be an integer from 1 to {MAX_EVENTS_PER_MESSAGE}, got {events_per_message!r}")
        self._events_per_message = events_per_message
        self._client = client
        self._filter = watch_filter
        self._backoff = backoff
        self._closed = threading.Event()
        self._call = None
        if start_revision == 0:
            # "From now on", pinned to a revision when the watch is made, so
            # that neither a late first next() nor a reconnect before the
            # first event misses anything.
            _, current = client._list("watch_workers", watch_filter, page_size=1, pages=1)
            start_revision = current + 1
        self._start_revision = start_revision
        self._last_revision = start_revision - 1
        self._reconnects = 0
        self._items = self._run()

    @property
    def last_revision(self) -> int:
        """The revision of the last item delivered, or the one the watch started after."""
        return self._last_revision

    @property
    def reconnects(self) -> int:
        """How many times the watch has been opened again after a failure."""
        return self._reconnects

    def __iter__(self) -> "WorkerWatch":
        return self

    def __next__(self) -> WatchItem:
        return next(self._items)

    def close(self) -> None:
        """Ends the watch: a blocked ``next()`` returns StopIteration. Idempotent, thread-safe."""
        self._closed.set()
        call = self._call
        # The iterator itself is not closed here: another thread may be inside
        # it. Cancelling its call is enough: it sees the flag and stops.
        if call is not None:
            call.cancel()

    def __enter__(self) -> "WorkerWatch":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _ended(self) -> bool:
        return self._closed.is_set() or self._client.closed

    def _run(self) -> Iterator[WatchItem]:
        failures = 0
        next_revision = self._start_revision
        while not self._ended():
            try:
                call = self._client._open_watch(self._filter, next_revision, self._events_per_message)
            except RegistryError as error:
                failure = error
            else:
                self._call = call
                if self._closed.is_set():
                    call.cancel()
                try:
                    for response in call:
                        # A batch is delivered one event at a time, and the resume point moves with each.
                        for proto_event in events_of(response):
                            event = models.to_worker_event(proto_event)
                            if event.revision <= self._last_revision:
                                continue
                            self._last_revision = event.revision
                            next_revision = event.revision + 1
                            failures = 0
                            yield event
                    failure = RegistryError("watch_workers", grpc.StatusCode.UNAVAILABLE, "the registry ended the watch stream")
                except grpc.RpcError as rpc_error:
                    failure = RegistryError.from_rpc_error("watch_workers", rpc_error)
                finally:
                    self._call = None
                    call.cancel()
            if self._ended():
                return
            if failure.code is grpc.StatusCode.OUT_OF_RANGE:
                try:
                    workers, revision = self._client._list("watch_workers", self._filter)
                except RegistryError as error:
                    failure = error
                else:
                    log.info("watch resynced: the registry no longer kept revision %d; listed again at revision %d", next_revision, revision)
                    self._last_revision = revision
                    next_revision = revision + 1
                    failures = 0
                    yield Resync(revision=revision, workers=tuple(workers))
                    continue
            if failure.code not in _RESUMABLE:
                raise failure
            self._client._connect_now()
            delay_s = self._backoff.delay_s(failures)
            failures += 1
            self._reconnects += 1
            log.warning(
                "watch interrupted; resuming from revision %d, attempt %d in %.3fs, %s: %s",
                next_revision,
                failures,
                delay_s,
                failure.code_name,
                failure.details,
            )
            if self._closed.wait(delay_s):
                return
            self._client._connect_now()
