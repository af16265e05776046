"""One open HeartbeatStream of one worker, as a WorkerNode drives it: a heartbeat, its reply, a clean close."""

from __future__ import annotations

import logging
import queue
import threading
from typing import TYPE_CHECKING, Callable, Iterator, Optional

import grpc

from ._proto import service_pb2
from .errors import RegistryError
from .models import HeartbeatReply, to_heartbeat_reply

if TYPE_CHECKING:
    from .client import WorkerRegistryClient

log = logging.getLogger("sentinel_registry.worker_node")

_END = object()

# How a stream that ends by the client's own hand, or cleanly, ends: nothing for on_end.
_NOT_A_FAILURE = (grpc.StatusCode.OK, grpc.StatusCode.CANCELLED)


class _Requests:
    """The request side of one heartbeat stream: grpc reads it on its own thread.

    ``close()`` ends the iteration, which half-closes the stream; it must be
    called for every stream, or grpc's reading thread waits here forever.
    """

    def __init__(self) -> None:
        self._queue: "queue.Queue[object]" = queue.Queue()

    def put(self, request: "service_pb2.HeartbeatStreamRequest") -> None:
        self._queue.put(request)

    def close(self) -> None:
        self._queue.put(_END)

    def __iter__(self) -> Iterator["service_pb2.HeartbeatStreamRequest"]:
        while True:
            item = self._queue.get()
            if item is _END:
                return
            yield item  # type: ignore[misc]


class HeartbeatStream:
    """A HeartbeatStream opened for ``worker_id``, used by one thread.

    ``beat()`` sends one heartbeat and waits for its reply; ``close()`` ends
    the stream gracefully; ``release()`` must follow either way (in a
    ``finally``), and frees everything however the stream ended.

    ``on_end``, if given, hears the status of a stream the registry ends with
    a failure, as soon as it ends, between heartbeats too: the registry ends a
    drained worker's streams at once (NOT_FOUND with its removal reason). It
    runs on a grpc thread, so it must be quick; its exceptions are logged. A
    cancel (``release()``, the reply timeout) and a clean end are not told.

    Raises:
        RegistryError: from the constructor, if the stream cannot be opened.
    """

    def __init__(
        self,
        client: "WorkerRegistryClient",
        worker_id: str,
        reply_timeout_s: float,
        close_timeout_s: float,
        on_end: Optional[Callable[[RegistryError], None]] = None,
    ) -> None:
        self.worker_id = worker_id
        self._reply_timeout_s = reply_timeout_s
        self._close_timeout_s = close_timeout_s
        self._requests = _Requests()
        try:
            self._call = client.open_heartbeat_stream(worker_id, iter(self._requests))
        except RegistryError:
            self._requests.close()
            raise
        if on_end is not None:
            self._call.add_done_callback(lambda call: self._ended(call, on_end))

    def _ended(self, call: grpc.RpcError, on_end: Callable[[RegistryError], None]) -> None:
        try:
            if call.code() in _NOT_A_FAILURE:
                return
            on_end(RegistryError.from_rpc_error("heartbeat_stream", call))
        except Exception:  # noqa: BLE001 - grpc's thread must not die of it
            log.exception("handling the end of the heartbeat stream failed: worker %s", self.worker_id)

    def beat(self, sequence: int) -> HeartbeatReply:
        """Sends heartbeat ``sequence`` and returns its reply.

        Raises:
            RegistryError: the stream's status if it failed or ended;
                DEADLINE_EXCEEDED (and the stream is cancelled) when no reply
                came within the reply timeout.
        """
        timed_out = threading.Event()

        def give_up() -> None:
            timed_out.set()
            self._call.cancel()

        timer = threading.Timer(self._reply_timeout_s, give_up)
        timer.daemon = True
        self._requests.put(service_pb2.HeartbeatStreamRequest(worker_id=self.worker_id, sequence=sequence))
        timer.start()
        try:
            for message in self._call:
                # A reply to an earlier heartbeat must not count for this one.
                if message.sequence == sequence:
                    return to_heartbeat_reply(message)
            raise RegistryError("heartbeat_stream", grpc.StatusCode.UNAVAILABLE, "the registry ended the heartbeat stream")
        except grpc.RpcError as rpc_error:
            if timed_out.is_set():
                raise RegistryError(
                    "heartbeat_stream", grpc.StatusCode.DEADLINE_EXCEEDED, f"no heartbeat reply within {self._reply_timeout_s}s"
                ) from rpc_error
            raise RegistryError.from_rpc_error("heartbeat_stream", rpc_error) from rpc_error
        finally:
            timer.cancel()

    def close(self) -> None:
        """Half-closes the stream and waits for the registry to end it, cancelling it after the close timeout."""
        self._requests.close()
        timer = threading.Timer(self._close_timeout_s, self._call.cancel)
        timer.daemon = True
        timer.start()
        try:
            for _ in self._call:
                pass
        except grpc.RpcError:
            pass
        finally:
            timer.cancel()

    def release(self) -> None:
        """Ends the request side and cancels the call. Idempotent; harmless after ``close()``."""
        self._requests.close()
        self._call.cancel()
