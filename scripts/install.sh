#!/usr/bin/env bash
# Install syncer from this checkout the way a Debian host wants it (PEP 668: no pip into
# the system Python). Idempotent: run it again to upgrade; your /etc/syncer files are kept.
#
#   /opt/syncer/                     a virtualenv holding syncer and its dependencies
#   /usr/local/bin/syncer            a wrapper running that venv's Python
#   /usr/share/syncer/lua/           the nginx Lua modules, at a path that survives venv rebuilds
#   /etc/systemd/system/syncer.service
#   /etc/syncer/syncer.toml          the example config (0640), kept if present
#   /etc/syncer/env                  Consul's environment variables (0600), kept if present
#   /etc/syncer/admin.token          api mode's admin token (0600, random), kept if present
#   /usr/local/share/man/man1/syncer.1, /usr/local/share/doc/syncer/
#
# Environment:
#   PREFIX           install under this folder instead of / (tests, trials); every
#                    installed file names the prefixed paths, so the result runs in place
#   PYTHON           interpreter for the venv (default python3; >= 3.10)
#   SYNCER_PIP_ARGS  extra arguments for the venv's `pip install` (e.g. --no-deps)
# Uninstall: scripts/uninstall.sh (docs/install.md).
set -euo pipefail

SRC=$(cd "$(dirname "$0")/.." && pwd)
PREFIX=${PREFIX:-}
PREFIX=${PREFIX%/}
PYTHON=${PYTHON:-python3}
read -r -a PIP_ARGS <<<"${SYNCER_PIP_ARGS:-}"

VENV=$PREFIX/opt/syncer
BIN=$PREFIX/usr/local/bin/syncer
LUA=$PREFIX/usr/share/syncer/lua
ETC=$PREFIX/etc/syncer
UNIT_DIR=$PREFIX/etc/systemd/system
MAN_DIR=$PREFIX/usr/local/share/man/man1
DOC_DIR=$PREFIX/usr/local/share/doc/syncer

say() { echo "install: $*"; }
die() { echo "install: $*" >&2; exit 1; }

[ -f "$SRC/pyproject.toml" ] && [ -d "$SRC/lua/syncer" ] || die "run me from a syncer checkout ($SRC is not one)"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null \
    || die "$PYTHON is missing or older than 3.10"

# root installs hand files to root; a trial run as a user keeps them its own
as_root=false
[ "$(id -u)" -eq 0 ] && as_root=true
own() { if $as_root; then chown root:root "$@"; fi; }

# 1. the virtualenv (Debian needs python3-venv for ensurepip). After a Python upgrade
# (Debian 12 -> 13: 3.11 -> 3.13) the old venv no longer runs: it is rebuilt.
version='import sys; print(sys.version)'
if [ ! -x "$VENV/bin/python" ] || [ "$("$VENV/bin/python" -c "$version" 2>/dev/null)" != "$("$PYTHON" -c "$version")" ]; then
    say "creating the virtualenv $VENV"
    install -d -m 0755 "$(dirname "$VENV")"
    "$PYTHON" -m venv --clear "$VENV" 2>/dev/null || die "'$PYTHON -m venv' failed; on Debian: apt install python3-venv"
fi
say "installing syncer into $VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${PIP_ARGS[@]}" "$SRC"

# 2. the command: a wrapper around the venv's entry point (not `python -m syncer`, which
# would put the caller's working folder first on sys.path), naming the stable Lua folder
install -d -m 0755 "$(dirname "$BIN")"
tmp=$(mktemp "$BIN.XXXXXX")
cat >"$tmp" <<EOF
#!/bin/sh
# syncer, installed by syncer's scripts/install.sh (uninstall: scripts/uninstall.sh).
# It runs in its own venv: the system Python's packages stay untouched (PEP 668).
SYNCER_LUA_DIR=\${SYNCER_LUA_DIR:-$PREFIX/usr/share/syncer/lua}
export SYNCER_LUA_DIR
exec $VENV/bin/syncer "\$@"
EOF
chmod 0755 "$tmp"
own "$tmp"
mv -f "$tmp" "$BIN"

# 3. the Lua modules, outside the venv: nginx.conf names this folder
# (`syncer lua-path` prints it), so a venv or Python upgrade never breaks nginx's reload
install -d -m 0755 "$LUA"
staged=$(mktemp -d "$LUA/.syncer.XXXXXX")
install -m 0644 "$SRC"/lua/syncer/*.lua "$staged/"
chmod 0755 "$staged"
own -R "$staged"
rm -rf "$LUA/syncer"
mv "$staged" "$LUA/syncer"

# 4. configuration: created once, never overwritten; secrets 0600 and owned by root
install -d -m 0750 "$ETC"
own "$ETC"
if [ ! -e "$ETC/syncer.toml" ]; then
    install -m 0640 "$SRC/examples/syncer.toml" "$ETC/syncer.toml"
    own "$ETC/syncer.toml"
    say "wrote $ETC/syncer.toml (edit the services and the mode)"
fi
if [ ! -e "$ETC/env" ]; then
    tmp=$(mktemp "$ETC/.env.XXXXXX")
    cat >"$tmp" <<'EOF'
# Environment for syncer.service: Consul's own variables, read as Consul's client reads them.
# CONSUL_HTTP_ADDR=127.0.0.1:8500
# CONSUL_HTTP_TOKEN_FILE=/etc/syncer/consul.token
# CONSUL_CACERT=/etc/consul.d/ca.pem
EOF
    chmod 0600 "$tmp"
    own "$tmp"
    mv "$tmp" "$ETC/env"
fi
if [ ! -e "$ETC/admin.token" ]; then
    tmp=$(mktemp "$ETC/.admin.token.XXXXXX")  # mktemp creates it 0600: never readable by others
    "$VENV/bin/python" -c 'import secrets; print(secrets.token_hex(32))' >"$tmp"
    own "$tmp"
    mv "$tmp" "$ETC/admin.token"
    say "wrote a random admin token to $ETC/admin.token (api mode)"
fi
for secret in "$ETC/admin.token" "$ETC/consul.token" "$ETC/env"; do
    if [ -e "$secret" ] && [ -n "$(find "$secret" -perm /077)" ]; then
        chmod go-rwx "$secret"
        say "tightened $secret to $(stat -c %a "$secret") (group or others could read it)"
    fi
done

# 5. the systemd unit, naming the prefixed paths when PREFIX is set
install -d -m 0755 "$UNIT_DIR"
tmp=$(mktemp "$UNIT_DIR/.syncer.service.XXXXXX")
sed -e "s#/usr/local/bin/syncer#$BIN#g" \
    -e "s#/etc/syncer/#$ETC/#g" \
    -e "s#/usr/local/share/doc/syncer#$DOC_DIR#g" \
    "$SRC/systemd/syncer.service" >"$tmp"
chmod 0644 "$tmp"
own "$tmp"
mv -f "$tmp" "$UNIT_DIR/syncer.service"

# 6. manual page (generated from the command-line parser) and documentation
install -d -m 0755 "$MAN_DIR" "$DOC_DIR"
"$BIN" manpage >"$MAN_DIR/syncer.1.tmp"
chmod 0644 "$MAN_DIR/syncer.1.tmp"
mv -f "$MAN_DIR/syncer.1.tmp" "$MAN_DIR/syncer.1"
install -m 0644 "$SRC/README.md" "$SRC"/docs/*.md "$SRC/LICENSE" "$DOC_DIR/"
install -d -m 0755 "$DOC_DIR/examples"
install -m 0644 "$SRC"/examples/* "$DOC_DIR/examples/"

if [ -z "$PREFIX" ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
fi
say "done: $("$BIN" --help >/dev/null && echo "$BIN works")"
say "next: edit $ETC/syncer.toml, print nginx's part with"
say "  $BIN nginx-example --layout debian --mode reload   (or --mode api)"
say "then: systemctl enable --now syncer"
