"""scripts/install.sh into a throwaway prefix, as README's "Installing it for real" does
it: a real venv, a real pip install of this checkout, the wrapper, the Lua modules at a
stable path, the unit (verified by systemd-analyze as installed), /etc/syncer with safe
modes; run twice (idempotent); then scripts/uninstall.sh, with and without --purge."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INSTALL = ROOT / "scripts" / "install.sh"
UNINSTALL = ROOT / "scripts" / "uninstall.sh"

pytestmark = [pytest.mark.slow]


def run(command: list[str], prefix: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PREFIX": str(prefix)}
    env.pop("SYNCER_LUA_DIR", None)
    env.pop("VIRTUAL_ENV", None)
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout, check=False)
    assert done.returncode == 0, f"{command} failed:\n{done.stdout}\n{done.stderr}"
    return done


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def manifest(prefix: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every installed file outside the venv: mode, owner and content."""
    found: dict[str, tuple[int, int, bytes]] = {}
    for path in sorted(prefix.rglob("*")):
        if path.is_file() and "opt/syncer" not in str(path.relative_to(prefix)):
            info = path.stat()
            found[str(path.relative_to(prefix))] = (stat.S_IMODE(info.st_mode), info.st_uid, path.read_bytes())
    return found


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    prefix = tmp_path_factory.mktemp("root")
    run(["bash", str(INSTALL)], prefix)
    return prefix


def test_layout_and_modes(installed: Path) -> None:
    """The venv, the wrapper, the Lua modules outside the venv, the unit, /etc/syncer with
    the example config (0640) and a random admin token (0600), owned by the installing user."""
    prefix = installed
    assert (prefix / "opt/syncer/bin/python").exists()
    wrapper = prefix / "usr/local/bin/syncer"
    assert mode(wrapper) == 0o755
    assert f'exec {prefix}/opt/syncer/bin/syncer "$@"' in wrapper.read_text()

    lua = prefix / "usr/share/syncer/lua/syncer"
    shipped = sorted(p.name for p in (ROOT / "lua" / "syncer").glob("*.lua"))
    assert sorted(p.name for p in lua.iterdir()) == shipped
    for name in shipped:
        assert (lua / name).read_bytes() == (ROOT / "lua" / "syncer" / name).read_bytes()
        assert mode(lua / name) == 0o644

    etc = prefix / "etc/syncer"
    assert mode(etc) == 0o750
    assert (etc / "syncer.toml").read_bytes() == (ROOT / "examples" / "syncer.toml").read_bytes()
    assert mode(etc / "syncer.toml") == 0o640
    token = etc / "admin.token"
    assert re.fullmatch(r"[0-9a-f]{64}\n", token.read_text())
    for secret in (token, etc / "env"):
        assert mode(secret) == 0o600
        assert secret.stat().st_uid == os.geteuid()
    unit = (prefix / "etc/systemd/system/syncer.service").read_text()
    assert f"ExecStart={prefix}/usr/local/bin/syncer run --config {prefix}/etc/syncer/syncer.toml\n" in unit
    assert f"EnvironmentFile=-{prefix}/etc/syncer/env" in unit


def test_installed_command_names_the_stable_lua_path(installed: Path) -> None:
    """`syncer lua-path` and the Debian snippet name the copy outside the venv; the
    installed agent refuses an invalid config with exit 2 (which the unit does not restart)."""
    wrapper = str(installed / "usr/local/bin/syncer")
    lua = f"{installed}/usr/share/syncer/lua"
    assert run([wrapper, "lua-path"], installed).stdout == f"{lua}\n"
    snippet = run([wrapper, "nginx-example", "--layout", "debian", "--mode", "api"], installed).stdout
    assert f'lua_package_path "{lua}/?.lua;;";' in snippet
    # the venv's own entry point, without the wrapper: the copy inside the package, flagged
    inside = run([str(installed / "opt/syncer/bin/syncer"), "lua-path"], installed)
    assert "site-packages/syncer/_shipped/lua" in inside.stdout
    assert "moves when the venv is rebuilt" in inside.stderr
    bad = installed / "bad.toml"
    bad.write_text('mode = "sideways"\n')
    command = [wrapper, "run", "--config", str(bad)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2, done.stderr
    assert "sideways" in done.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_installed_unit_verifies(installed: Path) -> None:
    """`systemd-analyze verify` on the unit exactly as installed: its ExecStart exists and
    runs, its Documentation= man page is found (MANPATH adds the prefix's man folder)."""
    unit = installed / "etc/systemd/system/syncer.service"
    env = {**os.environ, "MANPATH": f"{installed}/usr/local/share/man:"}
    done = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "", done.stderr


@pytest.mark.skipif(shutil.which("groff") is None, reason="groff is not installed")
def test_installed_man_page_renders_cleanly(installed: Path) -> None:
    """The man page generated from the parser renders without a groff warning and lists
    every subcommand's options."""
    page = installed / "usr/local/share/man/man1/syncer.1"
    done = subprocess.run(
        ["groff", "-man", "-Tutf8", "-ww", str(page)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0
    assert done.stderr == ""
    text = re.sub(r".\x08", "", done.stdout)
    for expected in ("SYNCER RUN", "SYNCER NGINX-EXAMPLE", "--consul-token-file", "--layout", "lua-path"):
        assert expected in text


def test_second_run_changes_nothing_but_keeps_operator_edits_and_tightens_secrets(installed: Path) -> None:
    """Run twice: the config an operator edited and the token are kept; a token someone
    made world-readable goes back to 0600; everything else is byte-identical."""
    etc = installed / "etc/syncer"
    (etc / "syncer.toml").write_text('mode = "api"\n')
    token = (etc / "admin.token").read_text()
    (etc / "admin.token").chmod(0o644)
    before = manifest(installed)
    done = run(["bash", str(INSTALL)], installed)
    assert "tightened" in done.stdout
    assert "creating the virtualenv" not in done.stdout  # the venv is reused
    after = manifest(installed)
    assert (etc / "syncer.toml").read_text() == 'mode = "api"\n'
    assert (etc / "admin.token").read_text() == token
    assert mode(etc / "admin.token") == 0o600
    before["etc/syncer/admin.token"] = (0o600, *before["etc/syncer/admin.token"][1:])
    assert after == before


def test_uninstall_keeps_the_configuration_unless_purged(installed: Path) -> None:
    """uninstall.sh removes the program, the Lua modules, the unit and the docs, and keeps
    /etc/syncer; --purge removes that too."""
    run(["bash", str(UNINSTALL)], installed)
    for gone in (
        "opt/syncer",
        "usr/local/bin/syncer",
        "usr/share/syncer",
        "etc/systemd/system/syncer.service",
        "usr/local/share/man/man1/syncer.1",
        "usr/local/share/doc/syncer",
    ):
        assert not (installed / gone).exists(), gone
    assert (installed / "etc/syncer/admin.token").exists()
    run(["bash", str(UNINSTALL), "--purge"], installed)
    assert not (installed / "etc/syncer").exists()
