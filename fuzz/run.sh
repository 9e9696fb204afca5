#!/usr/bin/env bash
# Runs every fuzz target (or those named) for SECONDS each (default 60) on the stable toolchain.
# Usage: fuzz/run.sh [-t SECONDS | -c CPU_SECONDS] [TARGET...]
# -c runs each target until the fuzzer itself has used CPU_SECONDS of CPU (in runs of at most
# two minutes), so that a campaign on a shared machine still gets its CPU time.
# Crashes land in fuzz/artifacts/TARGET/; copy a fixed one to fuzz/regressions/TARGET/ so that
# `cargo test` replays it forever.
set -euo pipefail
cd "$(dirname "$0")"
secs=60
cpu_target=0
if [ "${1:-}" = "-t" ]; then secs=$2; shift 2; fi
if [ "${1:-}" = "-c" ]; then cpu_target=$2; secs=120; shift 2; fi
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo fuzz list)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export CARGO_CACHE_RUSTC_INFO=0 RUSTC_BOOTSTRAP=1
# The fuzzer's own CPU time (user + system), read from the children's times after each run, so
# that a campaign on a shared machine can say how many CPU-minutes a target really had.
cpu_ticks() { awk '{print $14 + $15 + $16 + $17}' /proc/$$/stat; }
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t"
    cargo fuzz build "$t" >/dev/null 2>&1 || cargo fuzz build "$t"
    used=0
    while :; do
        echo "== $t ($secs s)"
        before=$(cpu_ticks)
        cargo fuzz run "$t" "corpus/$t" -- -max_total_time="$secs" -rss_limit_mb=2048 -max_len=65536 2>&1 |
            grep -E '^(#[0-9]+[[:space:]]+DONE|Done|==[0-9]+==|SUMMARY|artifact_prefix|Test unit written)|panicked' || true
        after=$(cpu_ticks)
        used=$(( used + (after - before) / $(getconf CLK_TCK) ))
        echo "   $t: $used CPU-seconds"
        [ "$used" -lt "$cpu_target" ] || break
        ls "artifacts/$t" 2>/dev/null | grep -q . && break
    done
done
