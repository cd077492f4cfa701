#!/usr/bin/env bash
# Compare relays under rtpload: rtprelay (io_uring, fallback), rtpengine (userspace) and mmsgfwd
# (bench's plain recvmmsg/sendmmsg forwarder: the ceiling to compare against), fresh process per run, loopback only, every run bounded (DURATION s). One JSON object per run on
# stdout: {"target":..., "rate_pps":..., "result": <rtpload --json>}.
#
#   cargo build --release -p rtprelay -p bench
#   bench/relay_compare.sh > bench/reports/relay-runs.jsonl
#
# Environment: TARGETS ("io_uring fallback rtpengine"; also "mmsgfwd"), STREAMS (2000), PPS ("25 37.5 50":
# packets/s per stream and direction; ×2 directions × STREAMS = total), DURATION (10),
# PORTS (4000-13999: below the e2e harness ports and the ephemeral range), CTL (22390),
# NICE (0; e.g. -10 to shield relay and load tool from background builds on a shared box),
# RELAY_ARGS (extra rtprelay flags, e.g. "--config ring.toml"), LABEL (suffix for "target"),
# BIN_DIR (where rtprelay, rtpload and mmsgfwd are; default $TARGET_DIR/release, TARGET_DIR default
# target), FWD_ARGS (extra mmsgfwd flags, e.g. "--batch 32"; default 2 threads pinned like rtprelay's).
set -euo pipefail
cd "$(dirname "$0")/.."
TARGETS=${TARGETS:-"io_uring fallback rtpengine"}
STREAMS=${STREAMS:-2000}
PPS=${PPS:-"25 37.5 50"}
DURATION=${DURATION:-10}
PORTS=${PORTS:-4000-13999}
CTL=${CTL:-22390}
ADMIN=${ADMIN:-29590}
BIN_DIR=${BIN_DIR:-${TARGET_DIR:-target}/release}
RELAY=$BIN_DIR/rtprelay
LOAD=$BIN_DIR/rtpload
FWD=$BIN_DIR/mmsgfwd
NICE=${NICE:-0}
LOG_DIR=${LOG_DIR:-$(mktemp -d /tmp/relay-compare.XXXXXX)}
[[ -x $RELAY && -x $LOAD ]] || { echo "build first: cargo build --release -p rtprelay -p bench" >&2; exit 2; }

pid=""
stop() {
    if [[ -n $pid ]]; then
        kill "$pid" 2>/dev/null || true
        # Bounded: SIGKILL if it has not exited 5 s after SIGTERM.
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        pid=""
    fi
}
trap stop EXIT

start() {
    local target=$1 log=$2
    case $target in
        io_uring|fallback)
            nice -n "$NICE" "$RELAY" --control-udp "127.0.0.1:$CTL" --admin "127.0.0.1:$ADMIN" --ports "$PORTS" \
                --datapath "$target" --log-level warn ${RELAY_ARGS:-} >"$log" 2>&1 &
            ;;
        mmsgfwd)
            [[ -x $FWD ]] || { echo "$FWD missing: cargo build --release -p bench" >&2; return 1; }
            nice -n "$NICE" "$FWD" --control "127.0.0.1:$CTL" --ports "$PORTS" --max-seconds 900 \
                ${FWD_ARGS:-} >"$log" 2>&1 &
            ;;
        rtpengine)
            command -v rtpengine >/dev/null || { echo "rtpengine not installed: skipped" >&2; return 1; }
            nice -n "$NICE" rtpengine --config-file=none --table=-1 --interface=127.0.0.1 \
                --listen-udp="127.0.0.1:$CTL" --foreground --log-stderr --log-level=4 \
                --port-min="${PORTS%-*}" --port-max="${PORTS#*-}" >"$log" 2>&1 &
            ;;
        *) echo "unknown target $target" >&2; return 1 ;;
    esac
    pid=$!
    sleep 1.5
}

# rtprelay's own counters after a run, summed over shards, as a JSON object.
relay_metrics() {
    curl -s --max-time 3 "http://127.0.0.1:$ADMIN/metrics" | awk '
        /^rtprelay_drops_total/ { match($0, /reason="[a-z_]+"/); r = substr($0, RSTART + 8, RLENGTH - 9); d[r] += $NF }
        /^rtprelay_multishot_rearms_total/ { rearms += $NF }
        /^rtprelay_packets_received_total/ { rx += $NF }
        /^rtprelay_packets_forwarded_total/ { fwd += $NF }
        /^rtprelay_datapath_loop_iterations_total/ { loops += $NF }
        END {
            printf "{\"received\":%d,\"forwarded\":%d,\"loop_iterations\":%d,\"multishot_rearms\":%d", rx, fwd, loops, rearms
            for (r in d) printf ",\"drops_%s\":%d", r, d[r]
            printf "}"
        }'
}

for target in $TARGETS; do
    for pps in $PPS; do
        [[ $target == rtpengine || $target == mmsgfwd || -n $(command -v curl) ]] || { echo "curl needed" >&2; exit 2; }
        log="$LOG_DIR/$target-$pps.log"
        start "$target" "$log" || continue
        rate=$(awk -v s="$STREAMS" -v p="$pps" 'BEGIN { printf "%d", s * p * 2 }')
        echo "run: $target $rate pps ($STREAMS streams × 2 × $pps pps), load $(cut -d' ' -f1 /proc/loadavg)" >&2
        if out=$(nice -n "$NICE" "$LOAD" --control "127.0.0.1:$CTL" -n "$STREAMS" -p "$pps" -d "$DURATION" \
                --relay-pid "$pid" --json); then
            metrics=null
            if [[ $target == io_uring || $target == fallback ]]; then
                metrics=$(relay_metrics)
            fi
            echo "{\"target\":\"$target${LABEL:-}\",\"rate_pps\":$rate,\"loadavg\":$(cut -d' ' -f1 /proc/loadavg),\"relay_metrics\":$metrics,\"result\":$out}"
        else
            echo "run failed: $target $pps (log $log)" >&2
        fi
        stop
        sleep 1
    done
done
echo "relay logs in $LOG_DIR" >&2
