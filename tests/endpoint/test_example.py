"""`syncer nginx-example`: the printed config passes `nginx -t`, starts and proxies."""

from __future__ import annotations

import argparse
import io
import json
import socket
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest
import requests

from syncer.nginx_example import ExampleError, ExampleOptions, add_arguments, render_example, run
from syncer.testing.backends import BackendFarm
from syncer.testing.nginx import NginxProcess, children
from syncer.testing.ports import free_port
from syncer.testing.wait import wait_until

from .helpers import NEEDS_NGINX, TOKEN

pytestmark = NEEDS_NGINX


def get(port: int, host: str) -> requests.Response:
    return requests.get(f"http://127.0.0.1:{port}/", headers={"Host": host}, timeout=5)


def test_reload_mode_config_starts_and_routes_by_host(tmp_path: Path, farm: BackendFarm) -> None:
    """Reload mode: includes the rendered upstream.conf and routes Host <service>[.*] to it."""
    prefix = tmp_path / "reload"
    upstream_conf = tmp_path / "upstream.conf"
    upstream_conf.write_text(
        f"""upstream web {{
    server 127.0.0.1:{farm.ports["b1"]} max_fails=1 fail_timeout=10s;
    keepalive 16;
}}
upstream api {{
    server 127.0.0.1:{farm.ports["b2"]};
    keepalive 16;
}}
"""
    )
    port = free_port()
    conf = render_example(
        "reload",
        ExampleOptions(listen=f"127.0.0.1:{port}", services=("web", "api"), upstream_conf=str(upstream_conf)),
    )
    assert "load_module" not in conf  # reload mode needs no Lua
    nginx = NginxProcess(prefix, conf)
    checked = nginx.test_config()
    assert checked.returncode == 0, checked.stderr
    nginx.start(wait_port=port)
    try:
        assert get(port, "web").text == "b1\n"
        assert get(port, "web.example.com").text == "b1\n"
        assert get(port, "API.example.com").text == "b2\n"
        assert get(port, "something-else").text == "b1\n"  # the first service is the default

        # what syncer's reload mode does: rewrite the include, reload
        upstream_conf.write_text(upstream_conf.read_text().replace(str(farm.ports["b2"]), str(farm.ports["b3"])))
        nginx.reload()
        assert get(port, "api").text == "b3\n"
    finally:
        nginx.stop()


@pytest.mark.parametrize("log_phase", [True, False])
def test_api_mode_config_starts_and_proxies(tmp_path: Path, farm: BackendFarm, log_phase: bool) -> None:
    """Api mode as printed (with or without the log phase): nginx -t passes, PUT over the
    admin API, traffic follows."""
    prefix = tmp_path / "api"
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    token_file.chmod(0o600)
    port, admin = free_port(), free_port()
    conf = render_example(
        "api",
        ExampleOptions(
            listen=f"127.0.0.1:{port}",
            admin_listen=f"127.0.0.1:{admin}",
            services=("shop", "cart"),
            token_file=str(token_file),
            snapshot_file=str(tmp_path / "snapshot.json"),
            worker_processes=2,
            log_phase=log_phase,
        ),
    )
    assert ("log_by_lua_block" in conf) is log_phase
    nginx = NginxProcess(prefix, conf)
    checked = nginx.test_config()
    assert checked.returncode == 0, checked.stderr
    nginx.start(wait_port=admin)
    try:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        for name, backend in (("shop", "b1"), ("cart", "b2")):
            body = {"servers": [{"address": "127.0.0.1", "port": farm.ports[backend], "max_conns": 1}]}
            response = requests.put(
                f"http://127.0.0.1:{admin}/upstreams/{name}", data=json.dumps(body), headers=auth, timeout=5
            )
            assert response.status_code == 200, response.text
        # max_conns 1 with keep-alive requests one after another: slots are released
        # by the log phase, or max_conns is ignored without it
        for _ in range(5):
            assert get(port, "shop").text == "b1\n"
        assert get(port, "cart.internal").text == "b2\n"
        assert get(port, "unknown").text == "b1\n"
    finally:
        nginx.stop()


def unix_http(path: Path, request: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(str(path))
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def test_api_mode_admin_on_a_unix_socket(tmp_path: Path) -> None:
    """The admin API can listen on a unix socket instead of a loopback port."""
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    token_file.chmod(0o600)
    sock = tmp_path / "admin.sock"
    port = free_port()
    conf = render_example(
        "api",
        ExampleOptions(
            listen=f"127.0.0.1:{port}",
            admin_listen=f"unix:{sock}",
            token_file=str(token_file),
            snapshot_file=None,
            worker_processes=1,
        ),
    )
    nginx = NginxProcess(tmp_path / "nginx", conf)
    nginx.start(wait_port=port)
    try:
        wait_until(sock.exists, timeout=10, message="the admin unix socket")
        request = f"GET /upstreams HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
        answer = unix_http(sock, request.encode())
        assert answer.startswith(b"HTTP/1.1 200")
        assert b'"upstreams":{}' in answer
    finally:
        nginx.stop()


@pytest.mark.parametrize(
    ("mode", "changes", "message"),
    [
        ("api", {"services": ()}, "at least one service"),
        ("api", {"services": ("web;",)}, "invalid upstream name"),
        ("api", {"services": ("web", "WEB")}, "twice"),
        ("api", {"admin_listen": "0.0.0.0:8081"}, "loopback"),
        ("api", {"admin_listen": "8081"}, "loopback"),
        ("api", {"admin_listen": "10.0.0.1:8081"}, "loopback"),
        ("api", {"admin_listen": "unix:relative.sock"}, "absolute"),
        ("api", {"listen": "localhost:80"}, "listen"),
        ("api", {"listen": "127.0.0.1:70000"}, "out of range"),
        ("api", {"token_file": "/etc/a token"}, "token_file"),
        ("api", {"snapshot_file": '/x";os.exit()--'}, "snapshot_file"),
        ("api", {"lua_dir": "/usr/share/lua;}"}, "lua_dir"),
        ("api", {"dict_size": "lots"}, "dict_size"),
        ("api", {"max_body": 10}, "max_body"),
        ("reload", {"upstream_conf": "/etc/x.conf; include /etc/passwd"}, "upstream_conf"),
        ("reload", {"pid_path": "logs/nginx pid"}, "pid_path"),
        ("reload", {"worker_processes": 0}, "worker_processes"),
        ("reload", {"error_log_level": "loud"}, "error_log_level"),
        ("reload", {"user": "root; daemon off"}, "user"),
        ("reload", {"connect_timeout": "2 s"}, "connect_timeout"),
    ],
)
def test_unsafe_or_invalid_options_are_refused(mode: Any, changes: dict[str, Any], message: str) -> None:
    """No option value can inject nginx syntax or produce a config that would not start."""
    with pytest.raises(ExampleError, match=message):
        render_example(mode, ExampleOptions(**changes))


def test_admin_listen_may_be_ipv6_loopback() -> None:
    """[::1]:PORT is loopback too."""
    assert "listen [::1]:8081;" in render_example("api", ExampleOptions(admin_listen="[::1]:8081"))


def test_cli_prints_the_config(tmp_path: Path) -> None:
    """`nginx-example --mode api ...` prints the config; a bad option exits 2."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        ["--mode", "api", "--service", "shop", "--service", "cart", "--listen", "8080", "--worker-processes", "2"]
    )
    out = io.StringIO()
    with redirect_stdout(out):
        assert run(args) == 0
    text = out.getvalue()
    assert "worker_processes 2;" in text
    assert '"cart.*" "cart";' in text
    assert 'default "shop";' in text
    assert "balancer_by_lua_block" in text

    bad = parser.parse_args(["--mode", "reload", "--service", "a b"])
    assert run(bad) == 2


@pytest.mark.parametrize("mode", ["reload", "api"])
def test_printed_config_hides_the_version_and_gives_two_descriptors_per_connection(
    tmp_path: Path, farm: BackendFarm, mode: Any
) -> None:
    """`server_tokens off`: nginx's error pages and Server header carry no version; and
    `worker_rlimit_nofile` is at least twice `worker_connections` (a proxied request holds
    the client's and the upstream's descriptor), which the running workers really get."""
    port, admin = free_port(), free_port()
    upstream_conf = tmp_path / "upstream.conf"
    upstream_conf.write_text(f"upstream web {{ server 127.0.0.1:{farm.ports['b1']}; }}\n")
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    options = ExampleOptions(
        listen=f"127.0.0.1:{port}",
        admin_listen=f"127.0.0.1:{admin}",
        upstream_conf=str(upstream_conf),
        token_file=str(token_file),
        snapshot_file=None,
        worker_processes=1,
        worker_connections=512,
    )
    conf = render_example(mode, options)
    (limit,) = (
        int(line.split()[1].rstrip(";")) for line in conf.splitlines() if line.startswith("worker_rlimit_nofile")
    )
    assert limit >= 2 * 512
    nginx = NginxProcess(tmp_path / "nginx", conf)
    nginx.start(wait_port=port)
    try:
        answer = get(port, "web")  # api mode: no servers pushed yet, so nginx's own 502 page
        assert answer.headers["Server"] == "nginx"
        if answer.status_code >= 400:
            assert "nginx/" not in answer.text
        workers = [proc for proc in children(nginx.pid) if "worker" in proc.title]
        assert workers
        for worker in workers:
            limits = Path(f"/proc/{worker.pid}/limits").read_text()
            (soft,) = (line.split()[3] for line in limits.splitlines() if line.startswith("Max open files"))
            assert int(soft) == limit
    finally:
        nginx.stop()
