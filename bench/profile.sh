#!/usr/bin/env bash
# bench/profile.sh: profile one of our daemons during the measured phase of a presence-bench run.
#
# usage: bench/profile.sh perf|callgrind tokio|smol PRESENCE-BENCH-ARGS...
#   e.g. bench/profile.sh perf tokio fanout --users 1000 --buddies 20 --connections 4 --rate 300
#        bench/profile.sh callgrind tokio fanout --users 200 --buddies 20 --connections 4 --rate 30
#
#   perf       `perf record -e cpu-clock -g` attached to the server for the measured phase
#              (cpu-clock: this machine's VM has no hardware counters, `perf stat -e instructions`
#              says "not supported"; the software clock samples user and kernel time alike).
#              Call graphs from DWARF (the release profile has debug info, no frame pointers).
#              Writes perf.data and perf-report.txt (by object, self and with callees).
#   callgrind  the server under `valgrind --tool=callgrind --instr-atstart=no`, collection
#              switched on for the measured phase only (`callgrind_control -i on/off`); user-space
#              instructions only (no kernel time). Writes callgrind.out and callgrind-report.txt
#              (callgrind_annotate, exclusive and inclusive). Valgrind slows the server 50-100x:
#              give a rate it can follow (and a small population: the setup runs under it too).
#
# env: BENCH_OUT (default target/bench-profile/<UTC date>-<tool>-<server>), BENCH_PORT (5285),
#      SERVER_ENV (e.g. "RUST_LOG=warn", passed to the server), PROFILE_SECONDS (default: the
#      --duration given, else 10), PROFILE_AT (the presence-bench progress line that starts the
#      profile, default "measuring"; e.g. PROFILE_AT="list subscriptions" PROFILE_SECONDS=3 for
#      `list ... --duration 0`).
# The release binaries must be built (bench/compare.sh builds them; or cargo build --release).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
TOOL=${1:?perf or callgrind}; KIND=${2:?tokio or smol}; shift 2
OUT="${BENCH_OUT:-target/bench-profile/$(date -u +%Y%m%dT%H%M%SZ)-$TOOL-$KIND}"
PORT="${BENCH_PORT:-5285}"
mkdir -p "$OUT"; OUT="$(cd "$OUT" && pwd)"
BIN="$ROOT/target/release/presence-server"; [ "$KIND" = smol ] && BIN="$ROOT/target/release/presence-server-smol"
SECS="${PROFILE_SECONDS:-}"
if [ -z "$SECS" ]; then
  SECS=10
  args=("$@")
  for i in "${!args[@]}"; do [ "${args[$i]}" = --duration ] && SECS=${args[$((i + 1))]}; done
fi

SERVER_PID=""; BENCH_PID=""
cleanup() {
  local s=$?
  for p in $BENCH_PID $SERVER_PID; do kill -TERM "$p" 2>/dev/null || true; done
  for p in $BENCH_PID $SERVER_PID; do
    for _ in $(seq 1 300); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
  done
  exit $s
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

cat >"$OUT/presence.conf" <<EOF
[presence-server]
transports=sip:127.0.0.1:$PORT;transport=tcp
max-subscriptions=1000000
max-subscriptions-per-connection=1000000
max-publications=1000000
accounts-database=$OUT/presence-accounts.db
EOF
# shellcheck disable=SC2086
if [ "$TOOL" = callgrind ]; then
  (cd "$OUT" && exec env ${SERVER_ENV:-} valgrind --tool=callgrind --instr-atstart=no \
     --callgrind-out-file="$OUT/callgrind.out" "$BIN" --config presence.conf) 2>"$OUT/server.log" &
else
  (cd "$OUT" && exec env ${SERVER_ENV:-} "$BIN" --config presence.conf) 2>"$OUT/server.log" &
fi
SERVER_PID=$!
for _ in $(seq 1 300); do grep -q "listening on" "$OUT/server.log" && break; sleep 0.1; done
grep -q "listening on" "$OUT/server.log" || { tail "$OUT/server.log"; exit 1; }

"$ROOT/target/release/presence-bench" "$@" --server "127.0.0.1:$PORT" --pid "$SERVER_PID" --no-cleanup \
  >"$OUT/bench.txt" 2>"$OUT/bench.err" &
BENCH_PID=$!
for _ in $(seq 1 6000); do
  grep -q "${PROFILE_AT:-measuring}" "$OUT/bench.err" 2>/dev/null && break
  kill -0 "$BENCH_PID" 2>/dev/null || { cat "$OUT/bench.err"; exit 1; }
  sleep 0.05
done
echo "\"${PROFILE_AT:-measuring}\" seen; profiling $SECS s" >&2
if [ "$TOOL" = callgrind ]; then
  callgrind_control -i on "$SERVER_PID" >/dev/null
  sleep "$SECS"
  callgrind_control -i off "$SERVER_PID" >/dev/null
else
  perf record -e cpu-clock --call-graph dwarf,32768 -p "$SERVER_PID" -o "$OUT/perf.data" -- sleep "$SECS" 2>"$OUT/perf-record.log"
fi
wait "$BENCH_PID" || true
BENCH_PID=""
tail -1 "$OUT/bench.txt" >"$OUT/bench.json"
kill -TERM "$SERVER_PID"
for _ in $(seq 1 600); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
SERVER_PID=""
if [ "$TOOL" = callgrind ]; then
  {
    echo "### exclusive"
    callgrind_annotate "$OUT/callgrind.out" 2>/dev/null | head -70
    echo "### inclusive"
    callgrind_annotate --inclusive=yes "$OUT/callgrind.out" 2>/dev/null | head -90
  } >"$OUT/callgrind-report.txt"
  echo "$OUT/callgrind-report.txt" >&2
else
  {
    echo "### by shared object"
    perf report -i "$OUT/perf.data" --stdio --no-children --sort dso -g none 2>/dev/null | grep -E '^ +[0-9]' || true
    echo "### self time by symbol"
    perf report -i "$OUT/perf.data" --stdio --no-children --sort dso,sym -g none 2>/dev/null | grep -E '^ +[0-9]' | head -60 || true
    echo "### time including callees (children), by symbol"
    perf report -i "$OUT/perf.data" --stdio --children --sort sym -g none 2>/dev/null | grep -E '^ +[0-9]' | head -80 || true
  } >"$OUT/perf-report.txt"
  echo "$OUT/perf-report.txt" >&2
fi
python3 -c 'import json,sys; r=json.loads(open(sys.argv[1]).read()); print({k: r.get(k) for k in ("result","notify_received","notifies_per_cpu_s","dialogs_per_cpu_s","server_cpu_user_s","server_cpu_sys_s","latency_p99_ms")})' "$OUT/bench.json" >&2 || true
