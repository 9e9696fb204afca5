#!/usr/bin/env bash
# Builds the Debian package with cargo-deb, installs it on this machine, checks the installed unit
# (systemd-analyze verify), the user, the permissions and the packaged configuration
# (--check-config), starts the packaged binary with the packaged configuration as the unit would
# (its user, its working directory, a notification socket), waits for `listening on` and
# READY=1, stops it with SIGTERM (exit status 0), and purges the package. systemd need not be
# running: the unit is verified, not started.
#
#   packaging/check-deb.sh            (as root; installs cargo-deb and systemd's tools if absent)
#
# It refuses to run when a presence-server package is already installed (it would purge it), and
# when something listens on 127.0.0.1:5065 (the packaged configuration's transport).
set -euo pipefail
cd "$(dirname "$0")/.."

started=$(date +%s)
step() { echo "== check-deb: $*"; }
fail() {
    echo "check-deb: $*" >&2
    exit 1
}

[ "$(id -u)" = 0 ] || fail "must run as root (dpkg -i)"
case "$(dpkg-query -W -f '${Status}' presence-server 2>/dev/null || true)" in
"" | *not-installed) ;;
*) fail "a presence-server package is installed (or its configuration is left); this check would purge it" ;;
esac
if (exec 3<>/dev/tcp/127.0.0.1/5065) 2>/dev/null; then
    fail "something listens on 127.0.0.1:5065, the packaged configuration's transport"
fi

step "tools"
if ! command -v cargo-deb >/dev/null; then
    cargo install cargo-deb --locked
fi
missing=()
command -v systemd-analyze >/dev/null || missing+=(systemd)
command -v adduser >/dev/null || missing+=(adduser)
command -v deb-systemd-helper >/dev/null || missing+=(init-system-helpers)
if [ ${#missing[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
fi
cargo deb --version

step "build"
cargo build --release -p runtime-tokio --bin presence-server
packaging/gen-conf.sh --check target/release/presence-server
rm -f target/debian/presence-server_*.deb target/debian/presence-server-dbgsym_*.ddeb
cargo deb -p runtime-tokio --no-build --fast
deb=$(ls target/debian/presence-server_*.deb)
dpkg-deb --info "$deb"
dpkg-deb --contents "$deb"

unit=/lib/systemd/system/presence-server.service
conf=/etc/presence-server/presence-server.conf
state=/var/lib/presence-server
work=$(mktemp -d)
server_pid=
cleanup() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill -KILL "$server_pid" || true
    fi
    if dpkg-query -W presence-server >/dev/null 2>&1; then
        dpkg --purge presence-server >/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

step "install"
dpkg -i "$deb"
[ -x /usr/bin/presence-server ] || fail "/usr/bin/presence-server missing"
/usr/bin/presence-server --version
[ -f "$unit" ] || fail "$unit missing"
grep -qx "$conf" /var/lib/dpkg/info/presence-server.conffiles || fail "$conf is not a conffile"
id presence-server
[ "$(stat -c '%U:%G %a' "$conf")" = "root:presence-server 640" ] ||
    fail "$conf: $(stat -c '%U:%G %a' "$conf"), expected root:presence-server 640"
[ "$(stat -c '%U:%G %a' "$state")" = "presence-server:presence-server 750" ] ||
    fail "$state: $(stat -c '%U:%G %a' "$state"), expected presence-server:presence-server 750"

step "systemd-analyze verify $unit"
# Warnings about other units of this machine are not ours: only lines naming ours fail.
if ! systemd-analyze verify "$unit" >"$work/verify.log" 2>&1 ||
    grep -q 'presence-server' "$work/verify.log"; then
    cat "$work/verify.log"
    fail "systemd-analyze verify failed"
fi
cat "$work/verify.log"

# As the unit runs it: its user, its working directory, its command line.
as_service() {
    (cd "$state" && exec setpriv --reuid presence-server --regid presence-server --init-groups \
        --inh-caps=-all -- "$@")
}
exec_start=$(sed -n 's/^ExecStart=//p' "$unit")
[ "$exec_start" = "/usr/bin/presence-server --config $conf" ] || fail "unexpected ExecStart=$exec_start"

step "--check-config with the packaged configuration"
as_service /usr/bin/presence-server --config "$conf" --check-config | tee "$work/check.txt"
grep -q "configuration OK: $conf" "$work/check.txt" || fail "--check-config"
grep -q "accounts: embedded SQLite $state/presence-accounts.db" "$work/check.txt" ||
    fail "the packaged configuration does not put the account database in $state"

step "start as the unit would ($exec_start)"
notify=
if command -v socat >/dev/null; then
    notify="$work/notify.sock"
    socat -u "UNIX-RECV:$notify" "OPEN:$work/notify.txt,creat" &
    socat_pid=$!
    for _ in $(seq 1 50); do [ -S "$notify" ] && break; sleep 0.1; done
    chmod 0777 "$work" "$notify"
else
    echo "(socat not found: READY=1 not checked)"
fi
(cd "$state" && exec env ${notify:+NOTIFY_SOCKET=$notify} setpriv --reuid presence-server \
    --regid presence-server --init-groups --inh-caps=-all -- $exec_start) 2>"$work/server.log" &
server_pid=$!
for _ in $(seq 1 100); do
    grep -q 'listening on' "$work/server.log" && break
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
done
cat "$work/server.log"
grep -q 'listening on 127.0.0.1:5065' "$work/server.log" || fail "the packaged server did not listen"
if [ -n "$notify" ]; then
    for _ in $(seq 1 50); do grep -q 'READY=1' "$work/notify.txt" 2>/dev/null && break; sleep 0.1; done
    grep -q 'READY=1' "$work/notify.txt" || fail "no READY=1 on NOTIFY_SOCKET"
    echo "READY=1 received"
    kill "$socat_pid" 2>/dev/null || true
fi
[ "$(stat -c %U "$state/presence-accounts.db")" = presence-server ] ||
    fail "the account database is not in $state, owned by presence-server"

step "stop (SIGTERM)"
kill -TERM "$server_pid"
status=0
wait "$server_pid" || status=$?
server_pid=
cat "$work/server.log"
[ "$status" = 0 ] || fail "exit status $status after SIGTERM"
grep -q 'SIGTERM received' "$work/server.log" || fail "no 'SIGTERM received' in the log"

step "purge"
dpkg --purge presence-server
[ ! -e /usr/bin/presence-server ] || fail "/usr/bin/presence-server left after purge"
[ ! -e "$unit" ] || fail "$unit left after purge"
[ ! -e "$conf" ] || fail "$conf left after purge"
[ ! -e "$state" ] || fail "$state left after purge"

echo "check-deb: OK in $(($(date +%s) - started)) s"
