#!/usr/bin/env bash
# NAT keepalives at carrier scale: N NATed bindings registered through the edge by SIPp, then
# the edge pings every one of them (OPTIONS, stateless) once per interval and a SIPp answers
# (-aa: automatic 200 to OPTIONS) from the address the bindings registered from. Reports the
# edge's CPU (utime+stime from /proc) over a measuring window as a share of one core, the pings
# sent and those that went unanswered, from the edge's /metrics.
#
#   bench/sipp/keepalive_load.sh [-n BINDINGS] [-r REGISTER_RATE] [-i INTERVAL_S] [-w WINDOW_S]
#
# Defaults: 100,000 bindings registered at 2,000/s, pinged every 30 s, measured over 60 s
# (two full rounds). `--json` as the last argument prints one JSON object instead of text.
# Addresses as in callrate.sh (edge 127.0.0.1, phones 127.0.0.2, core 127.0.0.3), ports from
# EDGE_PORT (25060), UAS_PORT (25070), UAC_PORT (25080), ADMIN_PORT (25090).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

N=100000 RATE=2000 INTERVAL=30 WINDOW=60 JSON=0
[ "${*: -1}" = "--json" ] 2>/dev/null && { JSON=1; set -- "${@:1:$(($# - 1))}"; }
while getopts "n:r:i:w:" opt; do
  case "$opt" in
    n) N="$OPTARG" ;;
    r) RATE="$OPTARG" ;;
    i) INTERVAL="$OPTARG" ;;
    w) WINDOW="$OPTARG" ;;
    *) die "usage: $0 [-n BINDINGS] [-r RATE] [-i INTERVAL_S] [-w WINDOW_S] [--json]" ;;
  esac
done
[ "$N" -le 500000 ] && [ "$WINDOW" -le 600 ] || die "bounded: at most 500,000 bindings, 600 s"
EDGE="$EDGE_IP:${EDGE_PORT:-25060}" UAS_P="${UAS_PORT:-25070}" UAC_P="${UAC_PORT:-25080}"
ADMIN="$EDGE_IP:${ADMIN_PORT:-25090}"
check_tools
OUT="$(mktemp -d /tmp/keepalive_load.XXXXXX)"
trap cleanup EXIT
LIMIT=$((N / RATE + 60))

metric() { # metric NAME: sum of a counter's samples on the edge's /metrics
  curl -s "http://$ADMIN/metrics" | awk -v m="$1" '$1 == m || index($1, m "{") == 1 { s += $NF } END { printf "%d", s }'
}

cat >"$OUT/edge.toml" <<TOML
[registrar]
mode = "contact"
store_path = "$OUT/location.log"
natping_interval_s = $INTERVAL
natping_method = "options"
natping_max_failures = 3
max_bindings_per_source = $((N + 1000))
TOML
"$SIPP" -sf "$HERE/uas_registrar.xml" -nostdin -i "$CORE_IP" -p "$UAS_P" -cp $((UAS_P + 1)) \
  -m "$N" -timeout "${LIMIT}s" >"$OUT/registrar.out" 2>&1 &
STARTED_PIDS+=($!)
wait_bound "$UAS_P" 10 || die "sipp registrar did not bind $UAS_P"
EDGE_ARGS="--config $OUT/edge.toml ${EDGE_ARGS:-}" \
  start_edge "$EDGE" "udp:$CORE_IP:$UAS_P" "$ADMIN" udp "$OUT/edge.log"

set +e
"$SIPP" "$EDGE" -sf "$HERE/uac_register_nated.xml" -nostdin -i "$ACCESS_IP" -p "$UAC_P" \
  -m "$N" -r "$RATE" -l 20000 -timeout "${LIMIT}s" -timeout_error \
  -trace_stat -stf "$OUT/ua_stats.csv" >"$OUT/ua.out" 2>&1
set -e
registered="$(stat_column "$OUT/ua_stats.csv" 'SuccessfulCall(C)')"
# The phones' address now answers the pings: a SIPp on the same ip:port, auto-answering OPTIONS.
"$SIPP" -sn uas -aa -nostdin -i "$ACCESS_IP" -p "$UAC_P" -timeout "$((WINDOW + 60))s" \
  >"$OUT/answerer.out" 2>&1 &
STARTED_PIDS+=($!)
wait_bound "$UAC_P" 10 || die "answering sipp did not bind $UAC_P"
# One interval to settle (every binding scheduled, answers flowing), then measure.
sleep "$INTERVAL"
sent0="$(metric edge_registrar_keepalives_sent_total)"
failed0="$(metric edge_registrar_keepalives_failed_total)"
before="$(cpu_ticks "$EDGE_PID")"
sleep "$WINDOW"
after="$(cpu_ticks "$EDGE_PID")" || die "edge died (log $OUT/edge.log)"
sent=$(($(metric edge_registrar_keepalives_sent_total) - sent0))
failed=$(($(metric edge_registrar_keepalives_failed_total) - failed0))
bindings="$(curl -s "http://$ADMIN/metrics" | awk '$1 == "edge_registrar_bindings" { print $NF }')"
rss_kb="$(awk '/^VmRSS/ { print $2 }' "/proc/$EDGE_PID/status")"
core_pct="$(awk -v t=$((after - before)) -v hz="$CLK_TCK" -v w="$WINDOW" 'BEGIN { printf "%.1f", 100 * t / hz / w }')"
us_per_ping="$(awk -v t=$((after - before)) -v hz="$CLK_TCK" -v n="$sent" 'BEGIN { if (n > 0) printf "%.1f", t / hz * 1e6 / n; else print "null" }')"
if [ "$JSON" = 1 ]; then
  printf '{"bindings_requested":%d,"registered":%s,"bindings":%s,"interval_s":%d,"window_s":%d,"pings_sent":%d,"pings_failed":%d,"edge_core_pct":%s,"us_per_ping":%s,"edge_rss_kb":%d}\n' \
    "$N" "${registered:-0}" "${bindings:-0}" "$INTERVAL" "$WINDOW" "$sent" "$failed" "$core_pct" "$us_per_ping" "$rss_kb"
else
  echo "registered $registered of $N NATed bindings (edge holds ${bindings:-?}); pinged every ${INTERVAL}s"
  echo "over ${WINDOW}s: $sent pings sent, $failed unanswered; edge CPU ${core_pct}% of one core" \
    "(${us_per_ping} us per ping), RSS $((rss_kb / 1024)) MB"
fi
echo "logs: $OUT" >&2
