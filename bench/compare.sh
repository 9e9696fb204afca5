#!/usr/bin/env bash
# bench/compare.sh: the same load scenarios against presence-server (tokio), presence-server-smol
# and Kamailio, in one run, each server freshly started for each scenario series; writes the
# results (ratios to Kamailio), the machine and the conditions into BENCHMARKS.md.
#
# usage: bench/compare.sh [--no-write] [--quick]
#   --no-write  leave BENCHMARKS.md alone (results only in $BENCH_OUT)
#   --quick     5 s phases and a 20k hold instead of 100k (to try the script; not for the table)
#
# env:  KAMAILIO_RUN     Kamailio's start script (default ../shared/bench/kamailio/run.sh, relative
#                        to the repository root; it prints the main PID)
#       BENCH_OUT        folder of this run's records and logs (default
#                        target/bench-compare/<UTC date>)
#       BENCH_PORT       port of our servers (default 5265); KAM_PORT Kamailio's (default 5275)
#       BENCH_SERVERS    subset of "tokio smol kamailio"
#       BENCH_SCENARIOS  subset of "fanout saturation saturation-deep churn churn-nolog hold100k
#                        hold100k-peruser list"
#       BENCH_LIST_RUNS  list runs per server (default 3)
#       BENCH_ALLOW_BUSY=1  run even when a fuzzer is running (it is recorded either way)
#
# Duration: about 6 minutes on the project's 2-core machine (5 min 48 s on 2026-11-27), plus
# the release build when sources changed (2.5-7 min here). Every bench run is bounded by
# `timeout` (4 min for the 100k series, 2 min for the others) and every server start by 10 s,
# so the whole run is bounded by the build plus 26 runs x their bound (about 60 min in the
# worst case).
#
# Every server started here is stopped by the EXIT trap (SIGTERM, then SIGKILL after 10 s),
# Kamailio's workers included (by the PIDs of its process tree, taken before stopping it).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
KAMAILIO_RUN="${KAMAILIO_RUN:-../shared/bench/kamailio/run.sh}"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
OUT="${BENCH_OUT:-target/bench-compare/$STAMP}"
PORT="${BENCH_PORT:-5265}"
KPORT="${KAM_PORT:-5275}"
SERVERS="${BENCH_SERVERS:-tokio smol kamailio}"
SCENARIOS="${BENCH_SCENARIOS:-fanout saturation saturation-deep churn churn-nolog hold100k hold100k-peruser list}"
LIST_RUNS="${BENCH_LIST_RUNS:-3}"
WRITE=1
QUICK=0
for a in "$@"; do
  case "$a" in
    --no-write) WRITE=0 ;;
    --quick) QUICK=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $a" >&2; exit 2 ;;
  esac
done
# One connection per user (churn, hold100k-peruser): 5000 sockets on each side.
ulimit -n "$(ulimit -Hn)"
LIB="$ROOT/bench/lib.py"
BENCH="$ROOT/target/release/presence-bench"
T0=$(date +%s)
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
log() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" | tee -a "$OUT/compare.log" >&2; }
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

# ------------------------------------------------------------------ servers and their cleanup
STARTED=()          # every PID we started (or Kamailio's tree), to stop on exit
SERVER_PID=""
SERVER_ADDR=""


# The PID and its descendants (Kamailio's workers).
tree_of() {
  local todo=("$1") out=() p c
  while [ ${#todo[@]} -gt 0 ]; do
    p=${todo[0]}; todo=("${todo[@]:1}")
    out+=("$p")
    for c in $(pgrep -P "$p" 2>/dev/null || true); do todo+=("$c"); done
  done
  echo "${out[@]}"
}

stop_server() {
  [ -z "$SERVER_PID" ] && return 0
  # shellcheck disable=SC2046
  stop_pids $(tree_of "$SERVER_PID")
  local keep=() p
  for p in "${STARTED[@]}"; do [ "$p" != "$SERVER_PID" ] && keep+=("$p"); done
  STARTED=("${keep[@]+"${keep[@]}"}")
  SERVER_PID=""
}

cleanup() {
  local status=$?
  if [ ${#STARTED[@]} -gt 0 ]; then
    local all=() p
    for p in "${STARTED[@]}"; do
      # shellcheck disable=SC2207
      all+=($(tree_of "$p"))
    done
    stop_pids "${all[@]}"
  fi
  exit $status
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM


# start_server KIND DIR [ENV...]: a fresh server in DIR; sets SERVER_PID and SERVER_ADDR.
start_server() {
  local kind=$1 dir=$2; shift 2
  mkdir -p "$dir"
  case "$kind" in
    tokio|smol)
      port_free "$PORT" || { log "port $PORT is taken (set BENCH_PORT)"; exit 1; }
      local bin="$ROOT/target/release/presence-server"
      [ "$kind" = smol ] && bin="$ROOT/target/release/presence-server-smol"
      cat >"$dir/presence.conf" <<EOF
[presence-server]
transports=sip:127.0.0.1:$PORT;transport=tcp
# proxy mode: every subscription of the 100k series arrives on 4 connections
max-subscriptions=1000000
max-subscriptions-per-connection=1000000
max-publications=1000000
accounts-database=$dir/presence-accounts.db
EOF
      (cd "$dir" && exec env "$@" "$bin" --config presence.conf) 2>"$dir/server.log" &
      SERVER_PID=$!
      STARTED+=("$SERVER_PID")
      SERVER_ADDR="127.0.0.1:$PORT"
      # Ready when the port listens (not from the log: RUST_LOG=warn hides "listening on").
      for _ in $(seq 1 100); do
        port_free "$PORT" || break
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
      done
      if port_free "$PORT" || ! kill -0 "$SERVER_PID" 2>/dev/null; then
        log "$kind did not start:"; tail -5 "$dir/server.log" >&2; exit 1
      fi
      ;;
    kamailio)
      port_free "$KPORT" || { log "port $KPORT is taken (set KAM_PORT)"; exit 1; }
      local pid
      pid=$(KAM_RUN="$dir" KAM_PORT="$KPORT" "$KAMAILIO_RUN" | tail -1)
      [[ "$pid" =~ ^[0-9]+$ ]] || { log "Kamailio did not start (see $dir)"; exit 1; }
      SERVER_PID=$pid
      STARTED+=("$SERVER_PID")
      SERVER_ADDR="127.0.0.1:$KPORT"
      ;;
  esac
}

# ------------------------------------------------------------------ scenarios
if [ $QUICK = 1 ]; then D=5; HOLD_USERS=1000; else D=10; HOLD_USERS=5000; fi
COMMON=(-q --no-cleanup)
scenario_args() {
  case "$1" in
    fanout) echo "fanout --users 1000 --buddies 20 --connections 4 --rate 300 --duration $D" ;;
    saturation) echo "fanout --users 1000 --buddies 20 --connections 4 --saturate --duration $D" ;;
    saturation-deep) echo "fanout --users 1000 --buddies 20 --connections 4 --saturate --window 1024 --duration $D" ;;
    churn|churn-nolog) echo "churn --users 1000 --duration $D" ;;
    hold100k) echo "hold --users $HOLD_USERS --subscriptions $((HOLD_USERS * 20)) --connections 4 --then-fanout --rate 300 --duration $D --setup-timeout 150" ;;
    hold100k-peruser) echo "hold --users $HOLD_USERS --subscriptions $((HOLD_USERS * 20)) --setup-timeout 150" ;;
    list) echo "list --users 1010 --lists 10 --entries 1000 --deflate --duration 0 --grace 1" ;;
  esac
}
servers_of() {
  case "$1" in
    list|churn-nolog) for s in $SERVERS; do [ "$s" != kamailio ] && echo "$s"; done ;;
    *) echo "$SERVERS" ;;
  esac
}
bound_of() { case "$1" in hold100k*) echo 240 ;; *) echo 120 ;; esac; }
after_of() { case "$1" in hold100k-peruser) echo 5 ;; *) echo 0 ;; esac; }

# ------------------------------------------------------------------ machine and conditions
FUZZ="$(pgrep -fa -- '-max_total_time=|cargo-fuzz|fuzz/run.sh' 2>/dev/null | grep -v pgrep || true)"
if [ -n "$FUZZ" ]; then
  log "a fuzzing campaign is running:"; echo "$FUZZ" | cut -c1-160 >&2
  [ "${BENCH_ALLOW_BUSY:-0}" = 1 ] || { log "refusing (BENCH_ALLOW_BUSY=1 to run anyway; it is recorded)"; exit 1; }
fi
{
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "- machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(awk '/MemTotal/ {printf "%.0f GB", $2/1048576}' /proc/meminfo) RAM"
  echo "- kernel: $(uname -srm)"
  echo "- commit: $(git rev-parse --short HEAD) ($(git log -1 --format=%s | cut -c1-70)…); working tree: $(git status --porcelain --untracked-files=no | wc -l) tracked files modified, $(git status --porcelain | grep -c '^??' || true) untracked paths (work in progress is built in)"
  echo "- toolchain: $(rustc -V); Kamailio: $(kamailio -v 2>/dev/null | head -1 | sed 's/^version: //') from $KAMAILIO_RUN (in-memory mode, 2 TCP workers)"
  echo "- load average at the start: $(cut -d' ' -f1-3 /proc/loadavg); fuzzer running: $( [ -n "$FUZZ" ] && echo "yes ($(echo "$FUZZ" | head -1 | cut -c1-80))" || echo no)"
} >"$OUT/machine.md"
cat "$OUT/machine.md" >&2

# ------------------------------------------------------------------ build
log "building release binaries"
cargo build --release --bin presence-server --bin presence-server-smol --bin presence-bench 2>&1 \
  | tail -2 | tee -a "$OUT/compare.log" >&2

# ------------------------------------------------------------------ run
run_one() {  # run_one SCENARIO KIND LABEL-SUFFIX
  local sc=$1 kind=$2 n=$3 dir="$OUT/$1-$2$3" envs=()
  [ "$sc" = churn-nolog ] && envs=(RUST_LOG=warn)
  start_server "$kind" "$dir" "${envs[@]+"${envs[@]}"}"
  # shellcheck disable=SC2046
  python3 "$LIB" run "$OUT/${sc}__${kind}${n}.json" --label "$sc $kind$n" --server "$kind" \
    --scenario "$sc" --pid "$SERVER_PID" --after "$(after_of "$sc")" -- timeout "$(bound_of "$sc")" "$BENCH" \
    $(scenario_args "$sc") "${COMMON[@]}" --server "$SERVER_ADDR" --pid "$SERVER_PID" \
    | tee -a "$OUT/compare.log" >&2 || true
  stop_server
}

for sc in $SCENARIOS; do
  log "series: $sc ($(scenario_args "$sc"))"
  for kind in $(servers_of "$sc"); do
    if [ "$sc" = list ]; then
      for i in $(seq 1 "$LIST_RUNS"); do run_one "$sc" "$kind" "-$i"; done
    else
      run_one "$sc" "$kind" ""
    fi
  done
done

ELAPSED=$(( $(date +%s) - T0 ))
echo "- duration of this run: $((ELAPSED / 60)) min $((ELAPSED % 60)) s, build included; load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.md"
{
  echo "Generated by \`bench/compare.sh\` ($(basename "$OUT")); records and logs in \`${OUT#"$ROOT"/}\`."
  echo
  cat "$OUT/machine.md"
  echo
  python3 "$LIB" table "$OUT"
} >"$OUT/results.md"
log "done in ${ELAPSED}s: $OUT/results.md"
if [ $WRITE = 1 ] && [ $QUICK = 0 ]; then
  python3 "$LIB" splice BENCHMARKS.md '<!-- compare.sh results: begin -->' '<!-- compare.sh results: end -->' "$OUT/results.md"
  log "BENCHMARKS.md updated"
fi
cat "$OUT/results.md"
