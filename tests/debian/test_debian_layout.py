"""`syncer nginx-example --layout debian`: the file for /etc/nginx/conf.d/ passes `nginx -t`
beside a copy of Debian's own stock nginx.conf (from the installed nginx-common package),
in both modes, with the packaged nginx binary and its compiled-in prefix and modules."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import requests

from syncer import resources
from syncer.nginx_example import DEBIAN_CONF_D, debian_options, render_example, rlimit_nofile
from syncer.testing.backends import BackendFarm
from syncer.testing.nginx import children, has_lua_module, nginx_binary
from syncer.testing.ports import free_port, port_open
from syncer.testing.wait import wait_until

STOCK = Path("/etc/nginx")
STOCK_CONF = STOCK / "nginx.conf"


def _debian_stock() -> bool:
    try:
        text = STOCK_CONF.read_text()
    except OSError:
        return False
    return "include /etc/nginx/modules-enabled/*.conf;" in text and "include /etc/nginx/conf.d/*.conf;" in text


pytestmark = [
    pytest.mark.nginx,
    pytest.mark.skipif(
        nginx_binary() is None or not has_lua_module() or not _debian_stock(),
        reason="needs Debian's packaged nginx (nginx-common's /etc/nginx) and libnginx-mod-http-lua",
    ),
]


class DebianNginx:
    """Debian's /etc/nginx copied under ``root``; only what must move is rewritten:
    /etc/nginx (so conf.d/ is ours), the logs and pid (so the host's are never touched), and,
    when not root, the `user` line. modules-enabled/ keeps its links to the packaged module
    snippets, which load the modules relative to nginx's compiled-in prefix."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.etc = root / "etc" / "nginx"
        self.logs = root / "var" / "log" / "nginx"
        shutil.copytree(STOCK, self.etc, symlinks=True)
        self.logs.mkdir(parents=True)
        # a host's own conf.d and sites: this test proves the stock config, not the host's
        for folder in ("conf.d", "sites-enabled"):
            shutil.rmtree(self.etc / folder)
            (self.etc / folder).mkdir()
        os.symlink(self.etc / "sites-available" / "default", self.etc / "sites-enabled" / "default")
        self.conf = self.etc / "nginx.conf"
        self.conf.write_text(self.moved(STOCK_CONF.read_text()))

    def moved(self, text: str) -> str:
        text = text.replace("/etc/nginx/", f"{self.etc}/")
        text = text.replace("/var/log/nginx/", f"{self.logs}/")
        text = text.replace("/run/nginx.pid", str(self.root / "nginx.pid"))
        if os.geteuid() != 0:
            text = re.sub(r"(?m)^user ", "# user ", text)
        return text

    def add(self, name: str, text: str) -> None:
        (self.etc / "conf.d" / name).write_text(self.moved(text))

    def test(self) -> subprocess.CompletedProcess[str]:
        # -e: nginx opens its compiled-in error log before it reads the config
        command = [nginx_binary() or "nginx", "-t", "-e", str(self.logs / "error.log"), "-c", str(self.conf)]
        return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)


def directives(text: str) -> list[str]:
    """The config's lines without comments and blank lines."""
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


UPSTREAMS = """upstream web {
    server 127.0.0.1:18080;
    keepalive 16;
}
"""


def test_reload_mode_snippet_passes_nginx_t_beside_debians_nginx_conf(tmp_path: Path) -> None:
    """Reload mode: the snippet and syncer's rendered upstream file both live in conf.d/;
    Debian's glob includes the upstream file once, so the snippet must not (a second include
    is `duplicate upstream "web"`, which the control below shows)."""
    nginx = DebianNginx(tmp_path)
    options = debian_options()
    assert options.upstream_conf.startswith(f"{DEBIAN_CONF_D}/")
    snippet = render_example("reload", options)
    assert not any(line.startswith("include") for line in directives(snippet))
    nginx.add("syncer-upstreams.conf", UPSTREAMS)
    nginx.add("syncer.conf", snippet)
    checked = nginx.test()
    assert checked.returncode == 0, checked.stderr

    include = f"    include {options.upstream_conf};\n"
    included = snippet.replace("    server_tokens off;\n", "    server_tokens off;\n" + include)
    nginx.add("syncer.conf", included)
    control = nginx.test()
    assert control.returncode != 0
    assert 'duplicate upstream "web"' in control.stderr


def test_reload_mode_includes_an_upstream_file_kept_outside_conf_d(tmp_path: Path) -> None:
    """An upstream file outside conf.d/ is not read by Debian's glob: the snippet includes it."""
    nginx = DebianNginx(tmp_path)
    outside = tmp_path / "syncer-upstreams.conf"
    outside.write_text(UPSTREAMS)
    snippet = render_example("reload", debian_options(upstream_conf=str(outside)))
    assert f"include {outside};" in directives(snippet)
    nginx.add("syncer.conf", snippet)
    checked = nginx.test()
    assert checked.returncode == 0, checked.stderr


def test_api_mode_snippet_passes_nginx_t_beside_debians_nginx_conf(tmp_path: Path) -> None:
    """Api mode: no load_module (modules-enabled/ loads ndk and lua already; a second load is
    `module "ndk_http_module" is already loaded`), Debian's paths, and the Lua init runs."""
    nginx = DebianNginx(tmp_path)
    token = tmp_path / "admin.token"
    token.write_text("0123456789abcdef0123456789abcdef\n")
    token.chmod(0o600)
    snippet = render_example(
        "api",
        debian_options(
            lua_dir=str(resources.shipped_lua_dir()),
            token_file=str(token),
            snapshot_file=str(tmp_path / "snapshot.json"),
        ),
    )
    assert not any(line.startswith("load_module") for line in directives(snippet))
    nginx.add("syncer.conf", snippet)
    checked = nginx.test()
    assert checked.returncode == 0, checked.stderr

    # the header's advice for the main context holds there too
    stock = nginx.conf.read_text()
    advice = f"worker_rlimit_nofile {rlimit_nofile(768)};"
    assert advice in snippet
    nginx.conf.write_text(stock.replace("worker_processes auto;", f"worker_processes auto;\n{advice}", 1))
    checked = nginx.test()
    assert checked.returncode == 0, checked.stderr

    # control: the prefix layout's load_module lines collide with modules-enabled/
    nginx.conf.write_text(
        stock.replace("include", "load_module /usr/lib/nginx/modules/ndk_http_module.so;\ninclude", 1)
    )
    control = nginx.test()
    assert control.returncode != 0
    assert "already loaded" in control.stderr


@pytest.mark.parametrize("mode", ["reload", "api"])
def test_debian_layout_names_debians_paths_and_nothing_of_the_main_context(mode: str) -> None:
    """No pid, error_log, events, temp paths, default_type or relative logs/ path; the
    admin log under /var/log/nginx; the Lua folder is the stable installed one."""
    text = render_example(mode, debian_options())  # type: ignore[arg-type]
    lines = directives(text)
    for forbidden in ("pid ", "error_log ", "events ", "worker_processes ", "load_module ", "default_type ", "http {"):
        assert not any(line.startswith(forbidden) for line in lines), forbidden
    assert not any("_temp_path" in line or "logs/" in line for line in lines)
    assert "server_tokens off;" in lines
    if mode == "api":
        assert 'lua_package_path "/usr/share/syncer/lua/?.lua;;";' in lines
        assert "access_log /var/log/nginx/syncer-admin-access.log;" in lines


@pytest.mark.skipif(os.geteuid() != 0, reason="Debian's nginx.conf starts as root (user www-data)")
def test_api_mode_runs_beside_debians_nginx_conf(tmp_path: Path) -> None:
    """Beyond `nginx -t`: Debian's nginx.conf plus the api snippet starts as Debian runs it
    (root master, www-data workers, modules from modules-enabled/), the admin API takes an
    upstream and traffic reaches the backend through the Lua balancer."""
    nginx = DebianNginx(tmp_path)
    (nginx.etc / "sites-enabled" / "default").unlink()  # port 80 is not the test's to take
    token = tmp_path / "admin.token"
    token.write_text("0123456789abcdef0123456789abcdef\n")
    token.chmod(0o600)
    port, admin = free_port(), free_port()
    nginx.add(
        "syncer.conf",
        render_example(
            "api",
            debian_options(
                listen=f"127.0.0.1:{port}",
                admin_listen=f"127.0.0.1:{admin}",
                lua_dir=str(resources.shipped_lua_dir()),
                token_file=str(token),
                snapshot_file=str(tmp_path / "snapshot.json"),
            ),
        ),
    )
    command = [nginx_binary() or "nginx", "-e", str(nginx.logs / "error.log"), "-c", str(nginx.conf)]
    with BackendFarm(tmp_path / "farm", ["b1"]) as farm:
        master = subprocess.Popen([*command, "-g", "daemon off;"], stderr=subprocess.PIPE)
        try:
            wait_until(lambda: port_open(admin), timeout=15, message="Debian's nginx listening")
            auth = {"Authorization": "Bearer 0123456789abcdef0123456789abcdef"}
            body = {"servers": [{"address": "127.0.0.1", "port": farm.ports["b1"]}]}
            pushed = requests.put(f"http://127.0.0.1:{admin}/upstreams/web", json=body, headers=auth, timeout=5)
            assert pushed.status_code == 200, pushed.text
            answer = requests.get(f"http://127.0.0.1:{port}/", headers={"Host": "web"}, timeout=5)
            assert answer.text == "b1\n"
            assert answer.headers["Server"] == "nginx"  # server_tokens off
            workers = [proc for proc in children(master.pid) if "worker" in proc.title]
            assert workers
            assert all(Path(f"/proc/{proc.pid}").stat().st_uid == pwd.getpwnam("www-data").pw_uid for proc in workers)
        finally:
            master.send_signal(signal.SIGQUIT)
            master.wait(timeout=15)
