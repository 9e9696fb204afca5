#!/usr/bin/env bash
# Writes the configuration file of the Debian package, packaging/presence-server.conf, from the
# binary's `--dump-default-config`: every key with its one-line description, commented out with
# its default (so that a new version's defaults apply unless the operator changed a key), except
# accounts-database, which points into the state directory.
#
#   packaging/gen-conf.sh [BINARY]          rewrite packaging/presence-server.conf
#   packaging/gen-conf.sh --check [BINARY]  exit 1 if the committed file differs
#
# BINARY defaults to target/release/presence-server.
set -euo pipefail
cd "$(dirname "$0")/.."

check=false
if [ "${1:-}" = --check ]; then
    check=true
    shift
fi
bin=${1:-target/release/presence-server}
out=packaging/presence-server.conf

generate() {
    cat <<'HEADER'
# /etc/presence-server/presence-server.conf: configuration of the presence-server package, in
# flexisip.conf syntax (the whole flexisip.conf of a Flexisip deployment may be used instead:
# point ExecStart's --config at it, see the unit's comments).
#
# Every key of [presence-server] is listed with its description, commented out with its default;
# uncomment and change what you need. Check the file with
#   presence-server --config /etc/presence-server/presence-server.conf --check-config
# then: systemctl restart presence-server.
#
# Accounts for long-term presence: presence-server --config <this file> accounts add|list|remove
# (run it as the presence-server user: runuser -u presence-server -- presence-server ...).
#
HEADER
    "$bin" --dump-default-config | sed -E \
        -e 's|^accounts-database=.*$|accounts-database=/var/lib/presence-server/presence-accounts.db|' \
        -e '/^accounts-database=/!s/^([a-z][a-z0-9-]*=)/#\1/'
}

if $check; then
    if ! diff -u "$out" <(generate); then
        echo "$out is out of date: run packaging/gen-conf.sh" >&2
        exit 1
    fi
else
    generate >"$out"
fi
