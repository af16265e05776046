"""A registry server process for the tests, and helpers to run Debian's Python in isolation."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, List, Optional, Sequence

REPO_ROOT = Path(__file__).resolve().parents[3]
PYTHON_SRC = REPO_ROOT / "clients" / "python" / "src"
EXAMPLES = REPO_ROOT / "clients" / "python" / "examples"
CLI = REPO_ROOT / "dist" / "src" / "cli" / "main.js"
DEBIAN_PYTHON = "/usr/bin/python3"


class RegistryServer:
    """One registry server process; ``restart()`` brings it back on the same port and database."""

    def __init__(self, db_path: Path, args: Sequence[str] = ()) -> None:
        self.db_path = db_path
        self.args = list(args)
        self.port = 0
        self.process: Optional[subprocess.Popen] = None
        self.logs: List[dict] = []
        self._stderr: List[str] = []

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30.0) -> "RegistryServer":
        if not CLI.exists():
            raise RuntimeError(f'{CLI} is missing: run "npm run build" (npm test does) before these tests')
        node = os.environ.get("REGISTRY_NODE") or shutil.which("node")
        if node is None:
            raise RuntimeError("node is not on PATH; set REGISTRY_NODE to the node binary")
        command = [node, str(CLI), "serve", "--host", "127.0.0.1", "--port", str(self.port), "--db", str(self.db_path), *self.args]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(self.db_path.parent))
        serving = threading.Event()
        process = self.process

        def read_stdout() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                self.logs.append(entry)
                if entry.get("msg") == "registry serving":
                    self.port = int(str(entry["address"]).rsplit(":", 1)[1])
                    serving.set()

        def read_stderr() -> None:
            assert process.stderr is not None
            for line in process.stderr:
                self._stderr.append(line)

        threading.Thread(target=read_stdout, daemon=True).start()
        threading.Thread(target=read_stderr, daemon=True).start()
        deadline = time.monotonic() + timeout_s
        while not serving.wait(0.05):
            if process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"registry did not start (exit {process.returncode}): {''.join(self._stderr)}")
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 15.0) -> None:
        """Stops the process (SIGTERM: graceful shutdown; SIGKILL: a crash) and waits for it to exit."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.process = None

    def restart(self, sig: int = signal.SIGTERM, down_s: float = 0.0) -> None:
        """Stops the server and starts it again on the same port and database file."""
        self.stop(sig)
        if down_s:
            time.sleep(down_s)
        self.start()


def wait_until(condition: Callable[[], object], timeout_s: float = 20.0, interval_s: float = 0.05, message: str = "condition"):
    """Polls ``condition`` until it returns something truthy, and returns that."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {message}")
        time.sleep(interval_s)


def debian_python_env(**extra: str) -> dict:
    """An environment with only clients/python/src on PYTHONPATH and nothing else Python-specific."""
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(PYTHON_SRC), "PYTHONDONTWRITEBYTECODE": "1", "LANG": "C.UTF-8"}
    env.update(extra)
    return env


def run_debian_python(args: Sequence[str], timeout_s: float = 60.0, cwd: Optional[str] = None, **extra_env: str) -> subprocess.CompletedProcess:
    """Runs Debian's Python (without user site-packages) with only clients/python/src on PYTHONPATH."""
    return subprocess.run(
        [DEBIAN_PYTHON, "-s", *args],
        env=debian_python_env(**extra_env),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        cwd=cwd or str(REPO_ROOT),
    )
