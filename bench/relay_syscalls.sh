#!/usr/bin/env bash
# Syscalls, io_uring events and context switches per forwarded packet of one relay under
# rtpload (issue 12: where the io_uring datapath spends more than the plain forwarder). Starts
# a fresh relay, runs rtpload, and while the load is steady counts the relay's events with
# `perf stat -p` for WINDOW seconds, divided by the packets the relay sent in the same session
# (net:net_dev_xmit in its threads: every forwarded packet leaves through lo once); CPU is
# perf's task-clock over the same packets. Loopback only, bounded, stops what it started by
# PID. Prints one JSON line (with rtpload's loss/backlog/p99 for the whole run).
#
#   cargo build --release -p rtprelay -p bench
#   TARGET=io_uring RATE=100000 TARGET_DIR=/work/target-bench bench/relay_syscalls.sh
#
# Environment: TARGET (io_uring | fallback | mmsgfwd), RATE (total packets/s, 100000), STREAMS
# (2000), WINDOW (3 s counted), PORTS (4000-13999), CTL (22390), ADMIN (29590), NICE (0),
# RELAY_ARGS / FWD_ARGS (extra flags), EVENTS (perf events, comma separated), BIN_DIR,
# RECORD (1: also a cpu-clock profile of the window, top symbols in the log dir's profile.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=${TARGET:-io_uring}
RATE=${RATE:-100000}
STREAMS=${STREAMS:-2000}
WINDOW=${WINDOW:-3}
PORTS=${PORTS:-4000-13999}
CTL=${CTL:-22390}
ADMIN=${ADMIN:-29590}
NICE=${NICE:-0}
BIN_DIR=${BIN_DIR:-${TARGET_DIR:-target}/release}
EVENTS=${EVENTS:-raw_syscalls:sys_enter,syscalls:sys_enter_io_uring_enter,syscalls:sys_enter_recvmmsg,syscalls:sys_enter_sendmmsg,syscalls:sys_enter_sendmsg,syscalls:sys_enter_epoll_wait,context-switches,io_uring:io_uring_task_add,io_uring:io_uring_task_work_run,io_uring:io_uring_local_work_run,io_uring:io_uring_cqring_wait,io_uring:io_uring_complete}
command -v perf >/dev/null || { echo "perf missing (apt-get install -y linux-perf)" >&2; exit 2; }
(( WINDOW >= 1 && WINDOW <= 30 )) || { echo "WINDOW 1..30" >&2; exit 2; }
pps=$(awk -v r="$RATE" -v s="$STREAMS" 'BEGIN { printf "%g", r / s / 2 }')
tmp=$(mktemp -d /tmp/relay-syscalls.XXXXXX)

pid="" lpid=""
stop() {
    for p in $lpid $pid; do
        kill "$p" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    pid="" lpid=""
}
trap stop EXIT

case $TARGET in
    io_uring|fallback)
        nice -n "$NICE" "$BIN_DIR/rtprelay" --control-udp "127.0.0.1:$CTL" --admin "127.0.0.1:$ADMIN" \
            --ports "$PORTS" --datapath "$TARGET" --log-level warn ${RELAY_ARGS:-} >"$tmp/relay.log" 2>&1 &
        ;;
    mmsgfwd)
        nice -n "$NICE" "$BIN_DIR/mmsgfwd" --control "127.0.0.1:$CTL" --ports "$PORTS" --max-seconds 300 \
            ${FWD_ARGS:-} >"$tmp/relay.log" 2>&1 &
        ;;
    *) echo "unknown TARGET $TARGET" >&2; exit 2 ;;
esac
pid=$!
sleep 1.5

nice -n "$NICE" "$BIN_DIR/rtpload" --control "127.0.0.1:$CTL" -n "$STREAMS" -p "$pps" \
    -d $((WINDOW + 5)) --relay-pid "$pid" --json >"$tmp/rtpload.json" 2>"$tmp/rtpload.err" &
lpid=$!
sleep 3   # set-up of the streams and ramp
# One perf session counts everything: the packets the relay sent (net:net_dev_xmit on lo in its
# threads = packets forwarded), its CPU (task-clock) and its syscalls and io_uring events.
perf stat -x, -e "task-clock,net:net_dev_xmit,$EVENTS" -p "$pid" -o "$tmp/perf.csv" -- sleep "$WINDOW" 2>/dev/null &
spid=$!
if [[ ${RECORD:-0} == 1 ]]; then
    # Where the time goes: cpu-clock samples (a software event: works in VMs) of the same window,
    # flat profile by symbol into $tmp/profile.txt (perturbs the CPU numbers a little).
    perf record -q -e cpu-clock -F 2000 -p "$pid" -o "$tmp/perf.data" -- sleep "$WINDOW" >/dev/null 2>&1 || true
    perf report -i "$tmp/perf.data" --stdio --sort sym --percent-limit 0.7 2>/dev/null |
        grep -v '^#' | grep -v '^$' | head -40 >"$tmp/profile.txt" || true
fi
wait "$spid"
wait "$lpid" || true
lpid=""
stop
load=$(cut -d' ' -f1 /proc/loadavg)
python3 - "$tmp/perf.csv" "$TARGET" "$RATE" "$load" "$WINDOW" "$tmp/rtpload.json" <<'EOF'
import json, sys
path, target, rate, load, window, load_json = sys.argv[1:]
counts = {}
for line in open(path):
    parts = line.strip().split(",")
    if len(parts) < 3 or line.startswith("#"):
        continue
    try:
        counts[parts[2].split(":")[-1].replace("sys_enter_", "")] = float(parts[0])
    except ValueError:
        continue
counts["all_syscalls"] = counts.pop("sys_enter", 0.0)
pkts = counts.pop("net_dev_xmit", 0.0)
cpu_ms = counts.pop("task-clock", 0.0)
try:
    r = json.load(open(load_json))
    run = {k: r.get(k) for k in ("sent_pps", "loss_percent", "backlog", "latency_p99_us")}
except (OSError, ValueError):
    run = None
print(json.dumps({
    "target": target, "rate_pps": int(rate), "window_s": int(window), "loadavg": float(load),
    "forwarded_in_window": int(pkts), "forwarded_pps": round(pkts / int(window)),
    "cpu_us_per_packet": round(cpu_ms * 1e3 / max(pkts, 1), 2),
    "per_packet": {k: round(v / max(pkts, 1), 4) for k, v in counts.items()},
    "rtpload": run,
}))
EOF
echo "logs in $tmp" >&2
