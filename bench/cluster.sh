#!/usr/bin/env bash
# bench/cluster.sh: NOTIFY throughput and latency of presence-server with 1, 2 and 3 nodes on one
# Redis, on this machine; writes the table, the machine and the conditions into BENCHMARKS.md
# (section "Several nodes (cluster)", between its markers).
#
# usage: bench/cluster.sh [--no-write] [--quick] [--wait-quiet]
#   --no-write    leave BENCHMARKS.md alone (results only in $BENCH_OUT)
#   --quick       5 s phases, one run per configuration (to try the script; not for the table)
#   --wait-quiet  after the build, wait (polling every 30 s, at most 20 min) for a quiet machine:
#                 1-minute load average below 0.7 and no rustc running; then run anyway. The
#                 load average is recorded either way.
#
# env:  BENCH_OUT          folder of this run's records and logs (default
#                        target/bench-cluster/<UTC date>)
#       BENCH_CLUSTER_PORT first node's port (default 5365; nodes on 5365, 5366, 5367)
#       REDIS_URI          the shared Redis (default redis://127.0.0.1:6379; redis-cli must reach
#                        it with REDIS_CLI_ARGS, default "-h 127.0.0.1 -p 6379")
#       BENCH_CONFIGS      subset of "single n1 n2 n3" (single: one node without Redis; nN: N
#                        nodes on Redis)
#       BENCH_SCENARIOS    subset of "fanout saturation"
#       BENCH_RUNS         runs per configuration and scenario (default 3: the median resists one
#                        run disturbed by the rest of the machine; --quick: 1)
#       BENCH_WINDOW       PUBLISHes in flight in the saturation series (default 64)
#
# For each configuration and scenario (and run), fresh nodes are started (one folder each, the
# configuration of bench/compare.sh plus the cluster keys, a Redis key prefix of their own),
# presence-bench loads them (connection i to node i mod N; a SUBSCRIBE goes to another node than
# its presentity's PUBLISHes: every NOTIFY crosses Redis), then they are stopped (SIGTERM, then
# SIGKILL after 10 s) and their Redis keys deleted. The EXIT trap stops whatever is still
# running and deletes the keys of this run. Every bench run is bounded by `timeout` (120 s), every
# node start by 10 s. Duration: about 6 minutes plus the release build when sources changed
# (and the wait with --wait-quiet).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
OUT="${BENCH_OUT:-target/bench-cluster/$STAMP}"
PORT0="${BENCH_CLUSTER_PORT:-5365}"
REDIS_URI="${REDIS_URI:-redis://127.0.0.1:6379}"
read -r -a RCLI <<<"${REDIS_CLI_ARGS:--h 127.0.0.1 -p 6379}"
CONFIGS="${BENCH_CONFIGS:-single n1 n2 n3}"
SCENARIOS="${BENCH_SCENARIOS:-fanout saturation}"
WRITE=1
QUICK=0
WAIT_QUIET=0
for a in "$@"; do
  case "$a" in
    --no-write) WRITE=0 ;;
    --quick) QUICK=1 ;;
    --wait-quiet) WAIT_QUIET=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $a" >&2; exit 2 ;;
  esac
done
if [ $QUICK = 1 ]; then D=5; RUNS="${BENCH_RUNS:-1}"; else D=10; RUNS="${BENCH_RUNS:-3}"; fi
WINDOW="${BENCH_WINDOW:-64}"
LIB="$ROOT/bench/lib.py"
BENCH="$ROOT/target/release/presence-bench"
SERVER_BIN="$ROOT/target/release/presence-server"
# One key prefix per run of this script; each configuration adds its own part.
PREFIX_BASE="bench-cluster-$STAMP-$$"
T0=$(date +%s)
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
log() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" | tee -a "$OUT/cluster.log" >&2; }
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

redis() { redis-cli "${RCLI[@]}" "$@"; }
redis_pid() { redis info server | tr -d '\r' | sed -n 's/^process_id://p'; }

# ------------------------------------------------------------------ nodes and their cleanup
NODES=()            # PIDs of the running nodes


# Deletes the Redis keys under a prefix (prints how many).
delete_keys() {
  local n
  n=$(redis --scan --pattern "$1*" | wc -l)
  if [ "$n" -gt 0 ]; then redis --scan --pattern "$1*" | xargs -r -n 500 redis-cli "${RCLI[@]}" del >/dev/null; fi
  echo "$n"
}

stop_nodes() {
  stop_pids "${NODES[@]+"${NODES[@]}"}"
  NODES=()
}

cleanup() {
  local status=$?
  stop_nodes
  if [ "$(redis --scan --pattern "$PREFIX_BASE*" 2>/dev/null | head -1)" != "" ]; then
    log "deleting the Redis keys left under $PREFIX_BASE: $(delete_keys "$PREFIX_BASE")"
  fi
  exit $status
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM


# start_nodes COUNT REDIS(0|1) DIR PREFIX: COUNT fresh nodes; sets NODES and ADDRS.
ADDRS=()
start_nodes() {
  local count=$1 use_redis=$2 dir=$3 prefix=$4 i port ndir pid
  ADDRS=()
  for i in $(seq 1 "$count"); do
    port=$((PORT0 + i - 1))
    port_free "$port" || { log "port $port is taken (set BENCH_CLUSTER_PORT)"; exit 1; }
    ndir="$dir/node$i"
    mkdir -p "$ndir"
    {
      echo "[presence-server]"
      echo "transports=sip:127.0.0.1:$port;transport=tcp"
      echo "max-subscriptions=1000000"
      echo "max-subscriptions-per-connection=1000000"
      echo "max-publications=1000000"
      echo "accounts-database=$ndir/presence-accounts.db"
      if [ "$use_redis" = 1 ]; then
        echo "redis-server-uri=$REDIS_URI"
        echo "redis-key-prefix=$prefix"
        echo "cluster-node-name=bench-node-$i"
      fi
    } >"$ndir/presence.conf"
    (cd "$ndir" && exec "$SERVER_BIN" --config presence.conf) 2>"$ndir/server.log" &
    pid=$!
    NODES+=("$pid")
    ADDRS+=("127.0.0.1:$port")
  done
  # Ready when every port listens and, on Redis, every node has connected to it.
  for i in $(seq 1 "$count"); do
    port=$((PORT0 + i - 1)); ndir="$dir/node$i"; pid=${NODES[$((i - 1))]}
    for _ in $(seq 1 100); do
      if ! port_free "$port" && { [ "$use_redis" = 0 ] || grep -q "cluster store .*: connected" "$ndir/server.log"; }; then
        break
      fi
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if port_free "$port" || ! kill -0 "$pid" 2>/dev/null \
      || { [ "$use_redis" = 1 ] && ! grep -q "cluster store .*: connected" "$ndir/server.log"; }; then
      log "node $i did not start:"; tail -5 "$ndir/server.log" >&2; exit 1
    fi
  done
}

# ------------------------------------------------------------------ scenarios
COMMON=(-q --no-cleanup --max-loss 1%)
scenario_args() {
  case "$1" in
    fanout) echo "fanout --users 1000 --buddies 20 --connections 6 --rate 300 --duration $D" ;;
    saturation) echo "fanout --users 1000 --buddies 20 --connections 6 --saturate --window $WINDOW --duration $D" ;;
  esac
}
nodes_of() { case "$1" in single) echo 1 ;; n*) echo "${1#n}" ;; esac; }

# ------------------------------------------------------------------ machine and conditions
redis ping >/dev/null 2>&1 || { echo "Redis is not reachable (redis-cli ${RCLI[*]})" >&2; exit 1; }
FUZZ="$(pgrep -fa -- '-max_total_time=|cargo-fuzz|fuzz/run.sh' 2>/dev/null | grep -v pgrep || true)"
{
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "- machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(awk '/MemTotal/ {printf "%.0f GB", $2/1048576}' /proc/meminfo) RAM"
  echo "- kernel: $(uname -srm)"
  echo "- commit: $(git rev-parse --short HEAD) ($(git log -1 --format=%s | cut -c1-70)…); working tree: $(git status --porcelain --untracked-files=no | wc -l) tracked files modified, $(git status --porcelain | grep -c '^??' || true) untracked paths (work in progress is built in)"
  echo "- toolchain: $(rustc -V); Redis: $(redis info server | tr -d '\r' | sed -n 's/^redis_version://p') at $REDIS_URI (shared: other users of it are counted in its CPU)"
  echo "- load average at the start: $(cut -d' ' -f1-3 /proc/loadavg); fuzzer running: $( [ -n "$FUZZ" ] && echo "yes ($(echo "$FUZZ" | head -1 | cut -c1-80))" || echo no)"
} >"$OUT/machine.md"
cat "$OUT/machine.md" >&2

# ------------------------------------------------------------------ build
log "building release binaries"
cargo build --release --bin presence-server --bin presence-bench 2>&1 \
  | tail -2 | tee -a "$OUT/cluster.log" >&2

if [ $WAIT_QUIET = 1 ]; then
  waited=0
  while :; do
    load1=$(cut -d' ' -f1 /proc/loadavg)
    busy=$(pgrep -xc rustc || true)
    if awk -v l="$load1" 'BEGIN { exit !(l < 0.7) }' && [ "$busy" = 0 ]; then break; fi
    if [ $waited -ge 1200 ]; then log "still busy after 20 min (load $load1, $busy rustc): running anyway"; break; fi
    log "waiting for a quiet machine (load $load1, $busy rustc)"
    sleep 30; waited=$((waited + 30))
  done
  echo "- waited $((waited / 60)) min $((waited % 60)) s for a quiet machine (1-minute load average below 0.7, no rustc); load average then: $(cut -d' ' -f1-3 /proc/loadavg); rustc processes: $(pgrep -xc rustc || true)" >>"$OUT/machine.md"
fi
echo "- load average when measuring started: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.md"

# ------------------------------------------------------------------ run
run_one() {  # run_one SCENARIO CONFIG RUN
  local sc=$1 cfg=$2 k=$3 n use_redis=1 dir prefix rpid pids=() servers=() a p
  n=$(nodes_of "$cfg")
  [ "$cfg" = single ] && use_redis=0
  dir="$OUT/$sc-$cfg-$k"
  prefix="$PREFIX_BASE-$sc-$cfg-$k:"
  start_nodes "$n" "$use_redis" "$dir" "$prefix"
  rpid=$(redis_pid)
  for p in "${NODES[@]}"; do pids+=(--pid "$p"); done
  for a in "${ADDRS[@]}"; do servers+=(--server "$a"); done
  # shellcheck disable=SC2046
  python3 "$LIB" run "$OUT/${sc}__${cfg}-${k}.json" --label "$sc $cfg #$k" --server "$cfg" \
    --scenario "$sc" "${pids[@]}" --store-pid "$rpid" -- timeout 120 "$BENCH" \
    $(scenario_args "$sc") "${COMMON[@]}" "${servers[@]}" "${pids[@]}" --store-pid "$rpid" \
    | tee -a "$OUT/cluster.log" >&2 || true
  stop_nodes
  if [ $use_redis = 1 ]; then
    log "  deleted $(delete_keys "$prefix") Redis keys under $prefix"
  fi
  # Errors and warnings of the nodes (the cluster's included), for the record.
  for p in "$dir"/node*/server.log; do
    if grep -qE ' (WARN|ERROR) ' "$p"; then
      log "  $(grep -cE ' (WARN|ERROR) ' "$p") WARN/ERROR lines in ${p#"$OUT"/}; first: $(grep -m1 -E ' (WARN|ERROR) ' "$p" | cut -c1-200)"
    fi
  done
}

for k in $(seq 1 "$RUNS"); do
  for sc in $SCENARIOS; do
    log "series: $sc ($(scenario_args "$sc")), run $k of $RUNS"
    for cfg in $CONFIGS; do run_one "$sc" "$cfg" "$k"; done
  done
done

ELAPSED=$(( $(date +%s) - T0 ))
echo "- duration of this run: $((ELAPSED / 60)) min $((ELAPSED % 60)) s, build included; load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.md"
{
  echo "Generated by \`bench/cluster.sh\` ($(basename "$OUT")); records and logs in \`${OUT#"$ROOT"/}\`."
  echo
  cat "$OUT/machine.md"
  echo
  python3 "$LIB" cluster-table "$OUT"
} >"$OUT/results.md"
log "done in ${ELAPSED}s: $OUT/results.md"
BEGIN='<!-- cluster.sh results: begin -->'
END='<!-- cluster.sh results: end -->'
if [ $WRITE = 1 ] && [ $QUICK = 0 ]; then
  if ! grep -qxF "$BEGIN" BENCHMARKS.md; then
    printf '\n## Several nodes (cluster)\n\n%s\n%s\n' "$BEGIN" "$END" >>BENCHMARKS.md
  fi
  python3 "$LIB" splice BENCHMARKS.md "$BEGIN" "$END" "$OUT/results.md"
  log "BENCHMARKS.md updated"
fi
cat "$OUT/results.md"
