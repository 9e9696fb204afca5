#!/usr/bin/env python3
"""Helpers of bench/compare.sh (standard library only).

  lib.py run OUT.json --label L --server S --scenario C [--pid PID]... [--store-pid PID]...
                     [--after SECONDS] -- CMD...
      Runs one presence-bench command; saves its JSON line (the last line of its stdout) with
      what the machine did meanwhile: wall time, busy CPU of the whole machine (/proc/stat),
      the server's CPU (its process tree, threads included), the tool's own CPU, and the CPU of
      everything else (busy - server - tool). The human summary goes to OUT.txt, stderr to OUT.err.
      --after S: then S more seconds of the server's CPU (what closing the tool's connections
      cost it), as server_cpu_after_exit_s.
      --store-pid: a store the servers share (redis-server), its CPU apart (store_total_cpu_s,
      not counted in other_cpu_s).
  lib.py table DIR            prints the Markdown results of DIR (the run's *.json records).
  lib.py cluster-table DIR    the same for bench/cluster.sh's records (1, 2, 3 nodes on Redis).
  lib.py splice FILE BEGIN END TEXTFILE
      replaces the lines between the markers BEGIN and END of FILE by TEXTFILE's content.
  lib.py cpu PID...           prints the CPU seconds of the process trees (for the script's log).
"""

import json
import os
import resource
import subprocess
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")


def tree(pids):
    """pids and their descendants."""
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
        except OSError:
            continue
        ppid = int(st[st.rfind(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], list(pids)
    while todo:
        p = todo.pop()
        if p in out:
            continue
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def tree_cpu(pids):
    """CPU seconds (utime + stime + reaped children) of the process trees."""
    total = 0
    for p in tree(pids):
        try:
            with open(f"/proc/{p}/stat") as f:
                st = f.read()
        except OSError:
            continue
        fields = st[st.rfind(")") + 2 :].split()
        total += sum(int(fields[i]) for i in (11, 12, 13, 14))
    return total / TICK


def machine_busy():
    """Busy CPU seconds of the whole machine since boot (all CPUs; idle and iowait excluded)."""
    with open("/proc/stat") as f:
        cpu = f.readline().split()
    v = [int(x) for x in cpu[1:]]
    # user nice system idle iowait irq softirq steal (guest is included in user)
    return (sum(v[:8]) - v[3] - v[4]) / TICK


def snapshot():
    """CPU ticks and command line of every process."""
    snap = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        fields = st[st.rfind(")") + 2 :].split()
        snap[int(d)] = (int(fields[11]) + int(fields[12]), int(fields[16]), cmd or st[: st.rfind(")") + 1])
    return snap


def top_others(before, after, exclude, wall):
    """The processes other than ours that used the most CPU between two snapshots (those that
    ended in between are not seen)."""
    rows = []
    for pid, (ticks, nice, cmd) in after.items():
        if pid in exclude:
            continue
        used = (ticks - before.get(pid, (0,))[0]) / TICK
        if used >= 0.05 * wall:
            rows.append((used, f"{used:.1f} s (nice {nice}): {cmd[:90]}"))
    rows.sort(reverse=True)
    return [r for _, r in rows[:4]]


def run(argv):
    out = argv[0]
    rec = {"pids": []}
    store = []
    i = 1
    while i < len(argv) and argv[i] != "--":
        key = argv[i].lstrip("-")
        if key == "pid":
            rec["pids"].append(int(argv[i + 1]))
        elif key == "store-pid":
            store.append(int(argv[i + 1]))
        else:
            rec[key] = argv[i + 1]
        i += 2
    cmd = argv[i + 1 :]
    rec["command"] = " ".join(cmd)
    rec["started"] = time.strftime("%H:%M:%S", time.gmtime())
    if store:
        rec["store_pids"] = store
    snap = snapshot()
    store_before = tree_cpu(store)
    before = (time.monotonic(), machine_busy(), tree_cpu(rec["pids"]))
    own = resource.getrusage(resource.RUSAGE_CHILDREN)
    base = out[: -len(".json")]
    with open(base + ".txt", "w") as so, open(base + ".err", "w") as se:
        status = subprocess.run(cmd, stdout=so, stderr=se).returncode
    if float(rec.get("after", 0)) > 0:
        # The server's CPU once the tool has gone (its connections closed), for `after` seconds.
        closed = tree_cpu(rec["pids"])
        time.sleep(float(rec["after"]))
        rec["server_cpu_after_exit_s"] = round(tree_cpu(rec["pids"]) - closed, 2)
    after = (time.monotonic(), machine_busy(), tree_cpu(rec["pids"]))
    store_used = tree_cpu(store) - store_before
    own2 = resource.getrusage(resource.RUSAGE_CHILDREN)
    tool = (own2.ru_utime - own.ru_utime) + (own2.ru_stime - own.ru_stime)
    rec["status"] = status
    rec["wall_s"] = round(after[0] - before[0], 2)
    rec["machine_busy_s"] = round(after[1] - before[1], 2)
    rec["server_total_cpu_s"] = round(after[2] - before[2], 2)
    rec["tool_total_cpu_s"] = round(tool, 2)
    if store:
        rec["store_total_cpu_s"] = round(store_used, 2)
    rec["other_cpu_s"] = round(
        rec["machine_busy_s"] - rec["server_total_cpu_s"] - rec["tool_total_cpu_s"] - store_used,
        2,
    )
    rec["others"] = top_others(
        snap, snapshot(), set(tree(rec["pids"] + store)) | {os.getpid()}, rec["wall_s"]
    )
    result = None
    with open(base + ".txt") as f:
        lines = [l for l in f.read().splitlines() if l.strip()]
    if lines:
        try:
            result = json.loads(lines[-1])
        except ValueError:
            result = None
    rec["result"] = result
    with open(out, "w") as f:
        json.dump(rec, f, indent=1)
    r = result or {}
    print(
        f"  {rec['label']:<44} exit {status}  {rec['wall_s']:6.1f} s wall  "
        f"server {rec['server_total_cpu_s']:.2f} s CPU  others {rec['other_cpu_s']:.2f} s  "
        f"{r.get('result', 'no JSON line')}"
    )


# ---------------------------------------------------------------- table

SERVERS = [("tokio", "presence-server"), ("smol", "presence-server-smol"), ("kamailio", "Kamailio")]


def load(d):
    recs = {}
    for name in sorted(os.listdir(d)):
        if name.endswith(".json") and "__" in name:
            with open(os.path.join(d, name)) as f:
                rec = json.load(f)
            recs.setdefault(rec["scenario"], {}).setdefault(rec["server"], []).append(rec)
    return recs


def get(recs, scenario, server, key, agg="median"):
    """The figure `key` of the runs of (scenario, server): median (or mean, sum) over repeats."""
    vals = []
    for rec in recs.get(scenario, {}).get(server, []):
        r = rec.get("result") or {}
        v = r.get(key, rec.get(key))
        if key == "bench_util" and r.get("bench_cpu_s") is not None and r.get("duration_s"):
            v = r["bench_cpu_s"] / r["duration_s"]
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            vals.append(float(v))
    if not vals:
        return None
    if agg == "mean":
        return sum(vals) / len(vals)
    if agg == "max":
        return max(vals)
    vals.sort()
    n = len(vals)
    return vals[n // 2] if n % 2 else (vals[n // 2 - 1] + vals[n // 2]) / 2


def fmt(v, unit=""):
    if v is None:
        return "–"
    if abs(v) >= 100:
        s = f"{v:,.0f}"
    elif abs(v) >= 10:
        s = f"{v:.1f}"
    elif abs(v) >= 1:
        s = f"{v:.2f}"
    else:
        s = f"{v:.3g}"
    return s + unit


def ratio(a, b, higher_better=True):
    if a is None or b is None or a == 0 or b == 0:
        return "–"
    x = a / b if higher_better else b / a
    return f"{x:,.0f}×" if x >= 100 else f"{x:.1f}×"


# (scenario, label, key, unit, higher is better, target text, target check on (value, kamailio))
ROWS = [
    ("fanout", "fanout: NOTIFYs per server CPU-second", "notifies_per_cpu_s", "", True,
     "≥ 5× Kamailio", lambda v, k: k is not None and v >= 5 * k),
    ("fanout", "fanout: server CPU-seconds", "server_cpu_s", " s", False, None, None),
    ("fanout", "fanout: PUBLISH→NOTIFY p50", "latency_p50_ms", " ms", False, None, None),
    ("fanout", "fanout: PUBLISH→NOTIFY p99", "latency_p99_ms", " ms", False,
     "< 5 ms", lambda v, k: v < 5),
    ("fanout", "fanout: PUBLISH→NOTIFY max", "latency_max_ms", " ms", False, None, None),
    ("fanout", "fanout: notes lost", "notify_lost", "", False, None, None),
    ("saturation", "saturation: PUBLISH/s", "publish_rate", "", True, None, None),
    ("saturation", "saturation: NOTIFYs/s", "notify_rate", "", True,
     "> Kamailio", lambda v, k: k is not None and v > k),
    ("saturation", "saturation: NOTIFYs per server CPU-second", "notifies_per_cpu_s", "", True,
     None, None),
    ("saturation", "saturation: server CPU / wall (cores)", "server_cpu_util", "", None, None, None),
    ("saturation", "saturation: presence-bench CPU / wall (cores)", "bench_util", "", None, None,
     None),
    ("saturation", "saturation: PUBLISH→NOTIFY p99", "latency_p99_ms", " ms", False,
     "bounded (< 100 ms)", lambda v, k: v < 100),
    ("saturation", "saturation: PUBLISH→NOTIFY max", "latency_max_ms", " ms", False, None, None),
    ("saturation-deep", "saturation, 1024 in flight: NOTIFYs/s", "notify_rate", "", True, None,
     None),
    ("saturation-deep", "saturation, 1024 in flight: PUBLISH→NOTIFY p99", "latency_p99_ms", " ms",
     False, None, None),
    ("saturation-deep", "saturation, 1024 in flight: PUBLISH→NOTIFY max", "latency_max_ms",
     " ms", False, None, None),
    ("hold100k", "100k held: memory per subscription (PSS)", "bytes_per_subscription", " B",
     False, "< 2 KB", lambda v, k: v < 2048),
    ("hold100k", "100k held: subscriptions set up per second", "subscribe_rate", "", True, None,
     None),
    ("hold100k", "100k held: subscriptions per server CPU-second", "subscriptions_per_cpu_s", "",
     True, None, None),
    ("hold100k", "100k held, fanout: NOTIFYs per server CPU-second", "notifies_per_cpu_s", "",
     True, None, None),
    ("hold100k", "100k held, fanout: PUBLISH→NOTIFY p99", "latency_p99_ms", " ms", False,
     None, None),
    ("hold100k", "100k held, fanout: PUBLISH/s served", "publish_rate", "", True, None, None),
    ("hold100k", "100k held, fanout: notes lost", "notify_lost", "", False, None, None),
    ("hold100k-peruser", "100k held, one connection per user (5000): memory per subscription "
     "(PSS)", "bytes_per_subscription", " B", False, "< 2 KB", lambda v, k: v < 2048),
    ("hold100k-peruser", "100k held, one connection per user: subscriptions per server CPU-second",
     "subscriptions_per_cpu_s", "", True, None, None),
    ("hold100k-peruser", "100k held, one connection per user: server CPU to handle the 5000 "
     "connections closing (5 s after the tool exits)", "server_cpu_after_exit_s", " s", False,
     None, None),
    ("churn", "churn: dialogs per second", "dialog_rate", "", True, None, None),
    ("churn", "churn: dialogs per server CPU-second", "dialogs_per_cpu_s", "", True,
     "≥ 3× Kamailio", lambda v, k: k is not None and v >= 3 * k),
    ("churn", "churn: setup p99 (SUBSCRIBE→200+NOTIFY)", "setup_p99_ms", " ms", False, None, None),
    ("churn-nolog", "churn with RUST_LOG=warn (no INFO line per subscription): dialogs per "
     "server CPU-second", "dialogs_per_cpu_s", "", None, None, None),
    ("list", "list 1000 entries, deflated: server CPU per list", "list_setup_cpu_ms_per_list",
     " ms", False, "< 50 ms", lambda v, k: v < 50),
    ("list", "list 1000 entries: SUBSCRIBE → full state p50", "full_state_p50_ms", " ms", False,
     None, None),
]


def table(d):
    recs = load(d)
    out = []
    out.append("| figure | presence-server (tokio) | presence-server-smol | Kamailio "
               "| tokio / Kamailio | smol / Kamailio | target | met (tokio, smol) |")
    out.append("|---|---|---|---|---|---|---|---|")
    for sc, label, key, unit, hib, target, check in ROWS:
        if sc not in recs:
            continue
        agg = "mean" if key == "list_setup_cpu_ms_per_list" else "median"
        v = {s: get(recs, sc, s, key, agg) for s, _ in SERVERS}
        k = v["kamailio"]
        met = ""
        if check:
            met = ", ".join(_yn(None if v[s] is None else check(v[s], k)) for s in ("tokio", "smol"))
        rt, rs = (
            ("", "") if hib is None else (ratio(v["tokio"], k, hib), ratio(v["smol"], k, hib))
        )
        out.append(
            f"| {label} | {fmt(v['tokio'], unit)} | {fmt(v['smol'], unit)} | "
            f"{fmt(k, unit) if sc not in ('list', 'churn-nolog') else 'not run'} | "
            f"{rt} | {rs} | {target or ''} | {met} |"
        )
    # 100k against 20k (the fanout series: same PUBLISH rate, same 20 watchers per PUBLISH).
    if "hold100k" in recs and "fanout" in recs:
        for key, label, hib in (
            ("notifies_per_cpu_s", "NOTIFYs per server CPU-second", True),
            ("latency_p99_ms", "PUBLISH→NOTIFY p99", False),
        ):
            cells, met = [], []
            for s, _ in SERVERS:
                a, b = get(recs, "fanout", s, key), get(recs, "hold100k", s, key)
                if a is None or b is None or a == 0 or b == 0:
                    cells.append("–")
                    ok = None
                else:
                    worse = a / b if hib else b / a
                    cells.append(f"{worse:.2f}× worse" if worse >= 1 else f"{1 / worse:.2f}× better")
                    ok = worse <= 2
                if s != "kamailio":
                    met.append(_yn(ok))
            out.append(
                f"| 100k held against 20k (fanout): {label} | {cells[0]} | {cells[1]} | "
                f"{cells[2]} |  |  | within 2× | {', '.join(met)} |"
            )
    out.append("")
    out.append("Ratios are “times better than Kamailio” (for times, latencies and memory: "
               "Kamailio's figure over ours). Each figure is the median of the series' runs "
               "(the list CPU: the mean). `–`: not measured or not applicable.")
    out.append("")
    # Conditions of each run.
    out.append("| run | exit | result | wall | server CPU (whole run) | tool CPU | other CPU "
               "(rest of the machine) | most CPU besides |")
    out.append("|---|---|---|---|---|---|---|---|")
    out.extend(_run_rows(recs, store=False))
    return "\n".join(out)


def _run_rows(recs, store):
    """One table row per run, in the order they ran (`store`: with Redis's CPU)."""
    runs = [rec for sc in recs for s in recs[sc].values() for rec in s]
    runs.sort(key=lambda rec: rec.get("started", ""))
    rows = []
    for rec in runs:
        r = rec.get("result") or {}
        store_cell = f"{rec.get('store_total_cpu_s', '–')} s | " if store else ""
        rows.append(
            f"| {rec['label']} | {rec['status']} | {r.get('result', 'no JSON')} | "
            f"{rec['wall_s']} s | {rec['server_total_cpu_s']} s | "
            f"{store_cell}"
            f"{rec['tool_total_cpu_s']} s | {rec['other_cpu_s']} s | "
            f"{'; '.join(o.replace('|', '/') for o in rec.get('others', [])[:2])} |"
        )
    return rows


def _yn(b):
    return "–" if b is None else ("yes" if b else "**no**")


# ---------------------------------------------------------------- cluster table (cluster.sh)

CLUSTER_CONFIGS = [
    ("single", "1 node, no Redis"),
    ("n1", "1 node + Redis"),
    ("n2", "2 nodes + Redis"),
    ("n3", "3 nodes + Redis"),
]


def _cluster_value(recs, sc, cfg, key):
    """A figure of cluster.sh's runs, with the derived ones (CPU of nodes + Redis)."""
    if key in ("cpu_with_store", "per_cpu_with_store", "us_per_notify"):
        if cfg == "single":
            # No Redis in use: the nodes' CPU alone (Redis's, if any, is other users').
            cpu = get(recs, sc, cfg, "server_cpu_s")
        else:
            a, b = get(recs, sc, cfg, "server_cpu_s"), get(recs, sc, cfg, "store_cpu_s")
            cpu = None if a is None or b is None else a + b
        n = get(recs, sc, cfg, "notify_received")
        if key == "cpu_with_store":
            return cpu
        if cpu is None or not cpu or n is None or not n:
            return None
        return n / cpu if key == "per_cpu_with_store" else cpu * 1e6 / n
    if key in ("store_cpu_s", "store_cpu_util") and cfg == "single":
        return None
    if key == "notify_superseded" and cfg in ("single", "n1"):
        return None
    if key == "cross_node_fraction":
        v = get(recs, sc, cfg, key)
        return None if v is None else 100 * v
    return get(recs, sc, cfg, key)


# (scenario, label, key, unit)
CLUSTER_ROWS = [
    ("fanout", "fanout: PUBLISH→NOTIFY p50", "latency_p50_ms", " ms"),
    ("fanout", "fanout: PUBLISH→NOTIFY p99", "latency_p99_ms", " ms"),
    ("fanout", "fanout: PUBLISH→NOTIFY max", "latency_max_ms", " ms"),
    ("fanout", "fanout: PUBLISH→200 p99", "publish_rtt_p99_ms", " ms"),
    ("fanout", "fanout: nodes' CPU-seconds", "server_cpu_s", " s"),
    ("fanout", "fanout: Redis CPU-seconds", "store_cpu_s", " s"),
    ("fanout", "fanout: NOTIFYs per CPU-second, nodes", "notifies_per_cpu_s", ""),
    ("fanout", "fanout: NOTIFYs per CPU-second, nodes + Redis", "per_cpu_with_store", ""),
    ("fanout", "fanout: CPU per NOTIFY, nodes + Redis", "us_per_notify", " µs"),
    ("fanout", "fanout: subscriptions whose NOTIFYs cross nodes", "cross_node_fraction", " %"),
    ("fanout", "fanout: notes lost", "notify_lost", ""),
    ("saturation", "saturation: PUBLISH/s", "publish_rate", ""),
    ("saturation", "saturation: NOTIFYs/s", "notify_rate", ""),
    ("saturation", "saturation: NOTIFYs per CPU-second, nodes", "notifies_per_cpu_s", ""),
    ("saturation", "saturation: NOTIFYs per CPU-second, nodes + Redis", "per_cpu_with_store",
     ""),
    ("saturation", "saturation: CPU per NOTIFY, nodes + Redis", "us_per_notify", " µs"),
    ("saturation", "saturation: nodes' CPU / wall (cores)", "server_cpu_util", ""),
    ("saturation", "saturation: Redis CPU / wall (cores)", "store_cpu_util", ""),
    ("saturation", "saturation: presence-bench CPU / wall (cores)", "bench_util", ""),
    ("saturation", "saturation: PUBLISH→NOTIFY p50", "latency_p50_ms", " ms"),
    ("saturation", "saturation: PUBLISH→NOTIFY p99", "latency_p99_ms", " ms"),
    ("saturation", "saturation: notes lost", "notify_lost", ""),
    ("saturation", "saturation: of which passed over by a newer note", "notify_superseded", ""),
]


def cluster_table(d):
    recs = load(d)
    cfgs = [(c, t) for c, t in CLUSTER_CONFIGS if any(c in recs.get(sc, {}) for sc in recs)]
    out = ["| figure | " + " | ".join(t for _, t in cfgs) + " |",
           "|---|" + "---|" * len(cfgs)]
    for sc, label, key, unit in CLUSTER_ROWS:
        if sc not in recs:
            continue
        if key == "store_cpu_util" and all(c == "single" for c, _ in cfgs):
            continue
        cells = []
        for c, _ in cfgs:
            v = _cluster_value(recs, sc, c, key)
            if v is None and key in ("store_cpu_s", "store_cpu_util") and c == "single":
                cells.append("(not used)")
            elif v is None and key in ("cross_node_fraction", "notify_superseded") and c in (
                "single", "n1"
            ):
                cells.append("")
            else:
                cells.append(fmt(v, unit))
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    out.append("")
    n = max((len(s) for sc in recs.values() for s in sc.values()), default=1)
    out.append(
        "Each figure is the median of "
        + (f"{n} runs" if n > 1 else "one run")
        + ". CPU is measured from `/proc` over the measured phase: the nodes' processes "
        "(summed), Redis's (`redis-server`, shared with any other user of it), presence-bench's "
        "own. `–`: not measured."
    )
    out.append("")
    out.append("| run | exit | result | wall | nodes' CPU (whole run) | Redis CPU | tool CPU | "
               "other CPU (rest of the machine) | most CPU besides |")
    out.append("|---|---|---|---|---|---|---|---|---|")
    out.extend(_run_rows(recs, store=True))
    return "\n".join(out)


def splice(path, begin, end, textfile):
    with open(textfile) as f:
        text = f.read().rstrip("\n")
    with open(path) as f:
        lines = f.read().split("\n")
    try:
        a = next(i for i, l in enumerate(lines) if l.strip() == begin)
        b = next(i for i, l in enumerate(lines) if l.strip() == end and i > a)
    except StopIteration:
        sys.exit(f"{path}: markers {begin} / {end} not found")
    lines[a + 1 : b] = [text]
    with open(path, "w") as f:
        f.write("\n".join(lines))


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "run":
        run(args)
    elif cmd == "table":
        print(table(args[0]))
    elif cmd == "cluster-table":
        print(cluster_table(args[0]))
    elif cmd == "splice":
        splice(*args)
    elif cmd == "cpu":
        print(f"{tree_cpu([int(a) for a in args]):.2f}")
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
