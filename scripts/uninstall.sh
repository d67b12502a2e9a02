#!/usr/bin/env bash
# Remove what scripts/install.sh installed. /etc/syncer (config, tokens) and
# /var/lib/syncer (api mode's snapshot) are kept unless --purge is given.
#   PREFIX   the same prefix given to install.sh (default /)
set -euo pipefail

PREFIX=${PREFIX:-}
PREFIX=${PREFIX%/}
purge=false
case "${1:-}" in
    "") ;;
    --purge) purge=true ;;
    *) echo "usage: $0 [--purge]" >&2; exit 2 ;;
esac

say() { echo "uninstall: $*"; }

if [ -z "$PREFIX" ] && [ -d /run/systemd/system ] && [ -e /etc/systemd/system/syncer.service ]; then
    systemctl disable --now syncer.service || true
fi

BIN=$PREFIX/usr/local/bin/syncer
if [ -e "$BIN" ]; then
    if grep -q "installed by syncer's scripts/install.sh" "$BIN"; then
        rm -f "$BIN"
    else
        say "left $BIN alone: it was not installed by scripts/install.sh"
    fi
fi
rm -f "$PREFIX/etc/systemd/system/syncer.service" "$PREFIX/usr/local/share/man/man1/syncer.1"
rm -rf "$PREFIX/opt/syncer" "$PREFIX/usr/share/syncer" "$PREFIX/usr/local/share/doc/syncer"
if $purge; then
    rm -rf "$PREFIX/etc/syncer" "$PREFIX/var/lib/syncer"
    say "removed the configuration and state as well"
else
    [ -d "$PREFIX/etc/syncer" ] && say "kept $PREFIX/etc/syncer (--purge removes it)"
fi
if [ -z "$PREFIX" ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
fi
say "done"
