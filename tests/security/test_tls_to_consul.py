"""TLS to Consul: CA and client certificate from Consul's own variables (CONSUL_CACERT,
CONSUL_CLIENT_CERT, CONSUL_CLIENT_KEY), verification on unless explicitly turned off.

The dev Consul has no TLS, so a real TLS test runs through a local proxy that terminates
TLS and requires a client certificate (tests/security/tls.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncer import config
from syncer.devconsul.server import DevConsul
from syncer.discovery.client import ConsulClient
from syncer.testing.consul import ConsulWriter
from tests.security.tls import OPENSSL, Pki, TLSProxy, make_pki
from tests.stack import write_config

pytestmark = pytest.mark.skipif(OPENSSL is None, reason="the openssl command is needed to make test certificates")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def tls_consul(pki: Pki, dev_consul: DevConsul) -> Iterator[TLSProxy]:
    ConsulWriter(dev_consul.url).register("web", "w1", 8080, address="10.1.2.3")
    proxy = TLSProxy(pki, ("127.0.0.1", dev_consul.port)).start()
    yield proxy
    proxy.stop()


def tls_env(pki: Pki, proxy: TLSProxy, *, ca: bool = True, client: bool = True) -> dict[str, str]:
    env = {"CONSUL_HTTP_ADDR": f"https://{proxy.address}"}
    if ca:
        env["CONSUL_CACERT"] = str(pki.ca)
    if client:
        env |= {"CONSUL_CLIENT_CERT": str(pki.client_cert), "CONSUL_CLIENT_KEY": str(pki.client_key)}
    return env


def once(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    cfg = write_config(tmp_path / "once.toml", {"consul": {"once_timeout": 0.3}})
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CONSUL_")}
    return subprocess.run(
        [sys.executable, "-m", "syncer", "once", "--dry-run", "--config", str(cfg), "--service", "web",
         "--output", str(tmp_path / "upstream.conf"), "--log-format", "json"],
        capture_output=True, text=True, timeout=60, check=False, env={**clean, **env},
    )  # fmt: skip


def test_the_session_gets_the_ca_and_client_certificate(pki: Pki) -> None:
    """Unit level: the py-consul session verifies against CONSUL_CACERT and presents the
    client pair; without a CA it still verifies (system CAs); only an explicit
    CONSUL_HTTP_SSL_VERIFY=false turns verification off."""
    base = {"CONSUL_HTTP_ADDR": "https://127.0.0.1:8501"}
    full = base | {"CONSUL_CACERT": str(pki.ca), "CONSUL_CLIENT_CERT": str(pki.client_cert)}
    full |= {"CONSUL_CLIENT_KEY": str(pki.client_key)}
    http = ConsulClient(config.load(None, env=full).consul)._consul.http
    assert (http.verify, http.cert) == (str(pki.ca), (str(pki.client_cert), str(pki.client_key)))
    assert http.base_uri.startswith("https://")

    default = ConsulClient(config.load(None, env=base).consul)._consul.http
    assert (default.verify, default.cert) == (True, None)
    off = ConsulClient(config.load(None, env=base | {"CONSUL_HTTP_SSL_VERIFY": "false"}).consul)._consul.http
    assert off.verify is False
    with pytest.raises(config.ConfigError, match="cert_file and key_file go together"):
        config.load(None, env=base | {"CONSUL_CLIENT_CERT": str(pki.client_cert)})


def test_tls_with_ca_and_client_certificate_works(pki: Pki, tls_consul: TLSProxy, tmp_path: Path) -> None:
    """Through the TLS proxy with the CA and the client pair, `syncer once` reads Consul."""
    done = once(tmp_path, tls_env(pki, tls_consul))
    assert done.returncode == 0, done.stderr
    assert "server 10.1.2.3:8080;" in done.stdout


def test_verification_is_on_by_default(pki: Pki, tls_consul: TLSProxy, tmp_path: Path) -> None:
    """Without CONSUL_CACERT the test CA is unknown: the certificate is refused."""
    done = once(tmp_path, tls_env(pki, tls_consul, ca=False))
    assert done.returncode == 1
    assert "CERTIFICATE_VERIFY_FAILED" in done.stderr


def test_a_server_that_wants_a_client_certificate_refuses_us_without_one(
    pki: Pki, tls_consul: TLSProxy, tmp_path: Path
) -> None:
    """The proxy (like `verify_incoming`) demands a client certificate: no pair, no answer."""
    done = once(tmp_path, tls_env(pki, tls_consul, client=False))
    assert done.returncode == 1
    assert "unreachable: SSLError" in done.stderr or "unreachable: ConnectionError" in done.stderr, done.stderr
    assert tls_consul.handshake_failures >= 1


def test_verification_can_be_turned_off_explicitly(pki: Pki, tls_consul: TLSProxy, tmp_path: Path) -> None:
    """CONSUL_HTTP_SSL_VERIFY=false (and no CA): the connection is made anyway."""
    done = once(tmp_path, tls_env(pki, tls_consul, ca=False) | {"CONSUL_HTTP_SSL_VERIFY": "false"})
    assert done.returncode == 0, done.stderr
