#!/usr/bin/env bash
# Call rate through the edge: SIPp uas (core) ← edge (release build) ← SIPp uac, a bounded number
# of calls at a given rate; reports failed calls and the edge's CPU time per call
# (utime+stime from /proc/PID/stat before and after the run).
#
#   bench/sipp/callrate.sh [-r RATE] [-m CALLS] [-t udp|tcp]
#
# Defaults: 500 calls/s, 10,000 calls, UDP. The edge listens on 127.0.0.1:25060 (admin :25090),
# the uas (core) on 127.0.0.3:25070, the uac (access side: a different IP from the core's, since
# the edge tells the sides apart by source IP) on 127.0.0.2:25080; override the ports with
# EDGE_PORT, UAS_PORT, UAC_PORT, ADMIN_PORT.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

RATE=500 CALLS=10000 TRANSPORT=udp
while getopts "r:m:t:" opt; do
  case "$opt" in
    r) RATE="$OPTARG" ;;
    m) CALLS="$OPTARG" ;;
    t) TRANSPORT="$OPTARG" ;;
    *) die "usage: $0 [-r RATE] [-m CALLS] [-t udp|tcp]" ;;
  esac
done
case "$TRANSPORT" in udp) T=u1 ;; tcp) T=t1 ;; *) die "transport must be udp or tcp" ;; esac
EDGE="$EDGE_IP:${EDGE_PORT:-25060}" UAS_P="${UAS_PORT:-25070}" UAC_P="${UAC_PORT:-25080}"
ADMIN="$EDGE_IP:${ADMIN_PORT:-25090}"
check_tools
OUT="$(mktemp -d /tmp/callrate.XXXXXX)"
trap cleanup EXIT
LIMIT=$((CALLS / RATE + 60))

"$SIPP" -sn uas -nostdin -i "$CORE_IP" -p "$UAS_P" -cp $((UAS_P + 1)) -t "$T" -m "$CALLS" \
  -timeout "${LIMIT}s" -trace_err -error_file "$OUT/uas_errors.log" >"$OUT/uas.out" 2>&1 &
STARTED_PIDS+=($!)
wait_bound "$UAS_P" 10 || die "sipp uas did not bind $UAS_P"
start_edge "$EDGE" "$TRANSPORT:$CORE_IP:$UAS_P" "$ADMIN" "$TRANSPORT" "$OUT/edge.log"

before="$(cpu_ticks "$EDGE_PID")"
t0="$(date +%s.%N)"
set +e
"$SIPP" "$EDGE" -sn uac -nostdin -i "$ACCESS_IP" -p "$UAC_P" -cp $((UAC_P + 1)) \
  -t "$T" -m "$CALLS" -r "$RATE" -l $((RATE * 4)) -timeout "${LIMIT}s" -timeout_error \
  -trace_err -error_file "$OUT/uac_errors.log" -trace_stat -stf "$OUT/uac_stats.csv" \
  >"$OUT/uac.out" 2>&1
rc=$?
set -e
t1="$(date +%s.%N)"
after="$(cpu_ticks "$EDGE_PID")" || die "edge died during the run (log: $OUT/edge.log)"
wall="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')"

report call "$CALLS" "$RATE" "$rc" "$OUT/uac_stats.csv" $((after - before)) "$wall"
curl -fsS -m 2 "http://$ADMIN/metrics" 2>/dev/null | grep -E '^edge_(sip_retransmissions|sip_parse_errors)_total' || true
echo "logs: $OUT"
exit "$rc"
