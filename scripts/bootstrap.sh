#!/usr/bin/env bash
# Set up everything syncer's demo, tests and benchmark need, on Debian 12, idempotently:
# nginx with the Lua module (Debian packages) and wrk when missing, then a virtualenv in
# .venv with syncer installed in editable mode with its test and bench extras.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(nginx-light libnginx-mod-http-lua lua-resty-core lua-cjson libnginx-mod-stream wrk)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "bootstrap: installing ${missing[*]}"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian starts the packaged nginx on port 80; syncer's demo and tests run their own.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet nginx 2>/dev/null; then
    echo "bootstrap: note: the system nginx is running; syncer's demo and tests use their own nginx on loopback ports"
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "bootstrap: creating .venv"
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.syncer-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "bootstrap: installing syncer into .venv"
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -e '.[test,bench]'
    touch "$stamp"
fi
