"""`syncer lua-path`: the folder for nginx's lua_package_path, from SYNCER_LUA_DIR or the
package's own copy; a folder without the modules is an error, not a silent wrong path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def lua_path(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "syncer", "lua-path"], capture_output=True, text=True, env=env, timeout=30, check=False
    )


def test_checkout_prints_its_lua_folder() -> None:
    env = {k: v for k, v in os.environ.items() if k != "SYNCER_LUA_DIR"}
    done = lua_path(env)
    assert done.returncode == 0, done.stderr
    folder = Path(done.stdout.strip())
    assert (folder / "syncer" / "init.lua").is_file()
    assert folder.resolve() == (ROOT / "lua").resolve()


def test_named_folder_wins_and_must_hold_the_modules(tmp_path: Path) -> None:
    empty = lua_path({**os.environ, "SYNCER_LUA_DIR": str(tmp_path)})
    assert empty.returncode == 1
    assert "holds no syncer/init.lua" in empty.stderr
    (tmp_path / "syncer").mkdir()
    (tmp_path / "syncer" / "init.lua").write_text("return {}\n")
    named = lua_path({**os.environ, "SYNCER_LUA_DIR": str(tmp_path)})
    assert named.returncode == 0
    assert named.stdout == f"{tmp_path}\n"
