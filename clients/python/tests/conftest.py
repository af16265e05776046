"""Fixtures: real registry servers for the Python client's tests.

Each server is `node dist/src/cli/main.js serve` in its own process, on
127.0.0.1 with a port the OS picks and a SQLite file in a temporary folder,
as an operator runs it. `npm run build` (which `npm test` runs first) makes
dist/.
"""

from __future__ import annotations

import itertools
import threading
from typing import Callable, List

import pytest

from registry_server import RegistryServer
from sentinel_registry import WorkerRegistryClient


@pytest.fixture
def start_registry(tmp_path_factory) -> Callable[..., RegistryServer]:
    """Starts servers of one's own (extra serve flags allowed); all are stopped after the test."""
    servers: List[RegistryServer] = []

    def start(*args: str) -> RegistryServer:
        folder = tmp_path_factory.mktemp("registry")
        server = RegistryServer(folder / "registry.db", args).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> RegistryServer:
    """A server shared by the tests of one module: tests use node ids of their own."""
    server = RegistryServer(tmp_path_factory.mktemp("registry") / "registry.db").start()
    yield server
    server.stop()


@pytest.fixture
def client(registry: RegistryServer) -> WorkerRegistryClient:
    with WorkerRegistryClient(registry.address) as client:
        yield client


_ids = itertools.count(1)


@pytest.fixture
def node_id(request) -> Callable[[str], str]:
    """Node ids unique to this test: a registration with a known node_id replaces that worker."""
    prefix = request.node.name.replace("[", "-").replace("]", "")[:40]

    def make(name: str = "node") -> str:
        return f"{prefix}-{name}-{next(_ids)}"

    return make


# Heartbeats every 200 ms keep the WorkerNode tests short (a node takes the interval from each reply, and
# hears of a drain within a fraction of a second).
FAST = ("--heartbeat-interval", "200ms")


@pytest.fixture
def fast_registry(start_registry):
    """A fresh registry whose nodes heartbeat every 200 ms."""
    return start_registry(*FAST)


@pytest.fixture
def observer(fast_registry):
    """A client of fast_registry, to look at what the nodes under test did."""
    with WorkerRegistryClient(fast_registry.address) as client:
        yield client


@pytest.fixture
def thread_failures():
    """Every exception that escapes a thread during the test."""
    failures = []
    previous = threading.excepthook
    threading.excepthook = lambda args: failures.append(args)
    yield failures
    threading.excepthook = previous
