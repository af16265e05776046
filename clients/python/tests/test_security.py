"""Tokens, per-worker credentials and TLS, against a registry that requires them."""

from __future__ import annotations

import signal
import subprocess

import pytest

from registry_server import wait_until
from sentinel_registry import RegistryError, WorkerNode, WorkerRegistryClient

WORKER_TOKEN = "worker-fleet-token-0123456789"
ORCHESTRATOR_TOKEN = "orchestrator-token-0123456789"
ADMIN_TOKEN = "admin-token-0123456789abcdef"


def rejected(client: WorkerRegistryClient) -> bool:
    try:
        client.get_registry_stats()
        return False
    except RegistryError as error:
        return error.code_name == "UNAUTHENTICATED"


def test_tokens_are_sent_and_a_node_keeps_working_on_its_own_token_after_the_fleet_token_is_revoked(start_registry, tmp_path, node_id):
    tokens = tmp_path / "tokens"
    tokens.write_text(f"worker {WORKER_TOKEN}\norchestrator {ORCHESTRATOR_TOKEN}\nadmin {ADMIN_TOKEN}\n")
    server = start_registry("--tokens-file", str(tokens), "--heartbeat-interval", "200ms")

    with WorkerRegistryClient(server.address) as anonymous:
        with pytest.raises(RegistryError) as unauthenticated:
            anonymous.get_registry_stats()
        assert unauthenticated.value.code_name == "UNAUTHENTICATED"

    with WorkerRegistryClient(server.address, token=ORCHESTRATOR_TOKEN) as orchestrator:
        with WorkerNode(server.address, node_id(), ["gpu"], 2, token=WORKER_TOKEN) as node:
            assert node.wait_connected(10)
            assert node.client.worker_token(node.worker_id)  # the worker's own credential, kept for its calls

            # Revoke the fleet's worker token (SIGHUP reloads the tokens file).
            tokens.write_text(f"orchestrator {ORCHESTRATOR_TOKEN}\nadmin {ADMIN_TOKEN}\n")
            server.process.send_signal(signal.SIGHUP)
            wait_until(lambda: rejected(node.client), message="the worker role token to be revoked")

            # Heartbeats and task bookkeeping name the worker, so they carry its own token and keep working.
            before = orchestrator.get_worker(node.worker_id).last_heartbeat_at
            wait_until(lambda: orchestrator.get_worker(node.worker_id).last_heartbeat_at > before, message="a heartbeat after the revocation")
            assert node.run_task(lambda: "still counted") == "still counted"
            assert orchestrator.get_worker(node.worker_id).metrics.tasks_completed == 1

            with orchestrator.worker(capabilities=["gpu"]) as acquired:
                assert acquired.worker.id == node.worker_id
            assert node.stop() is True  # unregistered with its own token


def test_a_worker_token_drains_only_its_own_worker_and_cordon_needs_an_orchestrator(start_registry, tmp_path, node_id):
    tokens = tmp_path / "tokens"
    tokens.write_text(f"worker {WORKER_TOKEN}\norchestrator {ORCHESTRATOR_TOKEN}\nadmin {ADMIN_TOKEN}\n")
    server = start_registry("--tokens-file", str(tokens))

    with WorkerRegistryClient(server.address, token=WORKER_TOKEN) as fleet, WorkerRegistryClient(server.address, token=ORCHESTRATOR_TOKEN) as orchestrator:
        mine = fleet.register_worker(node_id("mine"), ["gpu"], 1)
        other = fleet.register_worker(node_id("other"), ["gpu"], 1)
        own_token = fleet.worker_token(mine.id)
        with WorkerRegistryClient(server.address, token=own_token) as as_mine:
            with pytest.raises(RegistryError) as denied:
                as_mine.drain_worker(other.id)
            assert denied.value.code_name == "PERMISSION_DENIED"
            for call in (as_mine.cordon_worker, as_mine.uncordon_worker):
                with pytest.raises(RegistryError) as not_an_orchestrator:
                    call(mine.id)
                assert not_an_orchestrator.value.code_name == "PERMISSION_DENIED"
            assert orchestrator.get_worker(other.id).state == "active"
            assert as_mine.drain_worker(mine.id).state == "draining"  # its own: allowed (and idle, so removed)
        # Its token went with it: refused, saying why, with the reason as a trailer.
        with pytest.raises(RegistryError) as removed:
            fleet.heartbeat(mine.id)
        assert (removed.value.code_name, removed.value.removal_reason) == ("UNAUTHENTICATED", "drained")
        assert removed.value.details == f"worker {mine.id} not found: it was drained and removed once its tasks finished; its token is no longer valid"

        assert orchestrator.cordon_worker(other.id).state == "cordoned"
        assert orchestrator.uncordon_worker(other.id).state == "active"
        assert orchestrator.drain_worker(other.id, grace=60).state == "draining"


@pytest.fixture
def certificates(tmp_path):
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=tmp_path, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
            "-days", "2", "-subj", "/CN=test CA", "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=localhost")
    (tmp_path / "server.ext").write_text(
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n"
    )
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-set_serial", "1", "-days", "2", "-sha256",
            "-extfile", "server.ext", "-out", "server.crt")
    return tmp_path


def test_root_certificates_turn_tls_on(start_registry, certificates, node_id):
    server = start_registry("--tls-cert", str(certificates / "server.crt"), "--tls-key", str(certificates / "server.key"))
    ca = (certificates / "ca.crt").read_bytes()
    with WorkerRegistryClient(server.address, root_certificates=ca) as client:
        assert client.get_registry_stats().total_workers == 0
    with WorkerNode(server.address, node_id(), ["tls"], 1, root_certificates=ca) as node:
        assert node.wait_connected(10)
        assert node.run_task(lambda: "over TLS") == "over TLS"
    with WorkerRegistryClient(server.address, timeout_s=2, retry=None) as plaintext:
        with pytest.raises(RegistryError) as refused:
            plaintext.get_registry_stats()
        assert refused.value.code_name == "UNAVAILABLE"
