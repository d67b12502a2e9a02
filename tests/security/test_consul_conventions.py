"""Consul's environment and address rules, end to end: `syncer once` in a subprocess
against the dev Consul over IPv6, and through a TLS proxy (tests/security/tls.py) for
https:// addresses from the file, CONSUL_TLS_SERVER_NAME and CONSUL_CAPATH; a recording
server for what goes on the wire (ns, partition, basic auth, the token's header)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from syncer import config
from syncer.devconsul import server as devconsul_server
from syncer.devconsul.server import DevConsul
from syncer.discovery.client import ConsulClient
from syncer.testing.consul import ConsulWriter
from tests.security.tls import OPENSSL, Pki, TLSProxy, make_pki
from tests.stack import write_config

needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="the openssl command is needed to make test certificates")


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


needs_ipv6 = pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback on this machine")


def once(tmp_path: Path, env: dict[str, str], toml: dict[str, dict[str, object]] | None = None) -> Any:
    cfg = write_config(tmp_path / "once.toml", {"consul": {"once_timeout": 0.3, **(toml or {}).get("consul", {})}})
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CONSUL_")}
    return subprocess.run(
        [sys.executable, "-m", "syncer", "once", "--dry-run", "--config", str(cfg), "--service", "web",
         "--output", str(tmp_path / "upstream.conf"), "--log-format", "json"],
        capture_output=True, text=True, timeout=60, check=False, env={**clean, **env},
    )  # fmt: skip


# --- IPv6 ---------------------------------------------------------------------------------


@pytest.fixture
def consul_on_ipv6(monkeypatch: pytest.MonkeyPatch) -> Iterator[DevConsul]:
    """The dev Consul listening on [::1] only (its listener is a socketserver: IPv6 is a
    matter of its address family)."""
    monkeypatch.setattr(devconsul_server._Listener, "address_family", socket.AF_INET6)
    with DevConsul(host="::1", port=0) as dev:
        writer = ConsulWriter(f"http://[::1]:{dev.port}")
        writer.register("web", "w1", 8080, address="10.1.2.3")
        writer.close()
        yield dev


@needs_ipv6
def test_an_ipv6_consul_address_works(consul_on_ipv6: DevConsul, tmp_path: Path) -> None:
    """CONSUL_HTTP_ADDR=[::1]:PORT (before: requests' InvalidURL on every query)."""
    done = once(tmp_path, {"CONSUL_HTTP_ADDR": f"[::1]:{consul_on_ipv6.port}"})
    assert done.returncode == 0, done.stderr
    assert "server 10.1.2.3:8080;" in done.stdout


# --- TLS ----------------------------------------------------------------------------------


class TLSProxy6(TLSProxy):
    """The TLS proxy on [::1]: its certificate names 127.0.0.1 and localhost, not ::1."""

    def __init__(self, pki: Pki, target: tuple[str, int]) -> None:
        super().__init__(pki, target)
        self._listener.close()
        self._listener = socket.create_server(("::1", 0), family=socket.AF_INET6)

    @property
    def address(self) -> str:
        return f"[::1]:{self._listener.getsockname()[1]}"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def tls_consul(pki: Pki, dev_consul: DevConsul) -> Iterator[TLSProxy]:
    ConsulWriter(dev_consul.url).register("web", "w1", 8080, address="10.1.2.3")
    proxy = TLSProxy(pki, ("127.0.0.1", dev_consul.port)).start()
    yield proxy
    proxy.stop()


@pytest.fixture
def tls_consul6(pki: Pki, dev_consul: DevConsul) -> Iterator[TLSProxy]:
    ConsulWriter(dev_consul.url).register("web", "w1", 8080, address="10.1.2.3")
    proxy = TLSProxy6(pki, ("127.0.0.1", dev_consul.port)).start()
    yield proxy
    proxy.stop()


def client_pair(pki: Pki) -> dict[str, str]:
    return {"CONSUL_CLIENT_CERT": str(pki.client_cert), "CONSUL_CLIENT_KEY": str(pki.client_key)}


@needs_openssl
def test_https_in_the_config_file_is_kept(pki: Pki, tls_consul: TLSProxy, tmp_path: Path) -> None:
    """consul.address = "https://..." in the TOML (before: plain HTTP to the TLS port)."""
    toml: dict[str, dict[str, object]] = {"consul": {"address": f"https://{tls_consul.address}"}}
    done = once(tmp_path, {"CONSUL_CACERT": str(pki.ca), **client_pair(pki)}, toml)
    assert done.returncode == 0, done.stderr
    assert "server 10.1.2.3:8080;" in done.stdout


@needs_openssl
def test_consul_http_ssl_false_never_turns_https_off(pki: Pki, tls_consul: TLSProxy, tmp_path: Path) -> None:
    env = {"CONSUL_HTTP_ADDR": f"https://{tls_consul.address}", "CONSUL_HTTP_SSL": "false"}
    done = once(tmp_path, env | {"CONSUL_CACERT": str(pki.ca), **client_pair(pki)})
    assert done.returncode == 0, done.stderr


@needs_openssl
@needs_ipv6
@pytest.mark.parametrize(("server_name", "works"), [("localhost", True), (None, False), ("consul.example", False)])
def test_https_over_ipv6_with_the_tls_server_name(
    server_name: str | None, works: bool, pki: Pki, tls_consul6: TLSProxy, tmp_path: Path
) -> None:
    """https://[::1]:PORT; the certificate does not name ::1, so only CONSUL_TLS_SERVER_NAME
    set to a name it carries makes verification pass: the name is really used."""
    env = {"CONSUL_HTTP_ADDR": f"https://{tls_consul6.address}", "CONSUL_CACERT": str(pki.ca), **client_pair(pki)}
    if server_name:
        env["CONSUL_TLS_SERVER_NAME"] = server_name
    done = once(tmp_path, env)
    if works:
        assert done.returncode == 0, done.stderr
        assert "server 10.1.2.3:8080;" in done.stdout
    else:
        assert done.returncode == 1
        assert "CERTIFICATE_VERIFY_FAILED" in done.stderr or "match" in done.stderr, done.stderr


@needs_openssl
@pytest.mark.parametrize("trusted", [True, False])
def test_consul_capath_is_a_directory_of_trusted_cas(
    trusted: bool, pki: Pki, tls_consul: TLSProxy, tmp_path: Path
) -> None:
    """Every certificate in the directory, under any file name (no c_rehash needed);
    a directory without our CA does not verify."""
    capath = tmp_path / "cas"
    capath.mkdir()
    if trusted:
        shutil.copy(pki.ca, capath / "corp-root.crt")
    else:
        other = make_pki(tmp_path / "other-pki")
        shutil.copy(other.ca, capath / "someone-else.pem")
    env = {"CONSUL_HTTP_ADDR": f"https://{tls_consul.address}", "CONSUL_CAPATH": str(capath), **client_pair(pki)}
    done = once(tmp_path, env)
    if trusted:
        assert done.returncode == 0, done.stderr
    else:
        assert done.returncode == 1
        assert "CERTIFICATE_VERIFY_FAILED" in done.stderr, done.stderr


# --- on the wire --------------------------------------------------------------------------


class Recorder(BaseHTTPRequestHandler):
    seen: list[tuple[str, dict[str, list[str]], dict[str, str]]] = []

    def do_GET(self) -> None:
        url = urlparse(self.path)
        Recorder.seen.append((url.path, parse_qs(url.query, keep_blank_values=True), dict(self.headers)))
        body = json.dumps([]).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Consul-Index", "7")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[ThreadingHTTPServer]:
    Recorder.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def test_namespace_partition_auth_and_token_go_on_the_wire(recorder: ThreadingHTTPServer, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("from-the-file\n")
    env = {
        "CONSUL_HTTP_ADDR": f"127.0.0.1:{recorder.server_address[1]}",
        "CONSUL_HTTP_TOKEN": "from-the-variable",
        "CONSUL_HTTP_TOKEN_FILE": str(token_file),
        "CONSUL_HTTP_AUTH": "ops:s3cret",
        "CONSUL_NAMESPACE": "team-a",
        "CONSUL_PARTITION": "part-1",
    }
    client = ConsulClient(config.load(None, env=env).consul)
    try:
        client.health_service("web")
    finally:
        client.close()
    ((path, query, headers),) = Recorder.seen
    assert path == "/v1/health/service/web"
    assert query["ns"] == ["team-a"]
    assert query["partition"] == ["part-1"]
    assert headers["X-Consul-Token"] == "from-the-file"
    assert headers["Authorization"] == "Basic b3BzOnMzY3JldA=="  # ops:s3cret
