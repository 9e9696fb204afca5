# bench/lib.sh: shell helpers shared by bench/compare.sh and bench/cluster.sh (sourced).

# stop_pids PID...: SIGTERM, then SIGKILL to what is still alive after 10 s.
stop_pids() {
  local pids=("$@") p alive
  [ ${#pids[@]} -eq 0 ] && return 0
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for _ in $(seq 1 100); do
    alive=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && return 0
    sleep 0.1
  done
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
}

# port_free PORT: nothing listens on 127.0.0.1:PORT.
port_free() { ! ss -ltn 2>/dev/null | grep -q "127.0.0.1:$1 "; }
