#!/usr/bin/env bash
# REGISTER rate through the edge: SIPp registrar (uas_registrar.xml, core) ← edge (release build)
# ← SIPp UA (uac_register.xml, a new user per REGISTER), a bounded number at a given rate;
# reports failures and the edge's CPU time per REGISTER (utime+stime from /proc/PID/stat).
#
#   bench/sipp/register_rate.sh [-r RATE] [-m REGISTERS] [-t udp|tcp]
#
# Defaults: 1,000 REGISTER/s, 20,000 REGISTERs, UDP. Addresses and ports as in callrate.sh.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

RATE=1000 COUNT=20000 TRANSPORT=udp
while getopts "r:m:t:" opt; do
  case "$opt" in
    r) RATE="$OPTARG" ;;
    m) COUNT="$OPTARG" ;;
    t) TRANSPORT="$OPTARG" ;;
    *) die "usage: $0 [-r RATE] [-m REGISTERS] [-t udp|tcp]" ;;
  esac
done
case "$TRANSPORT" in udp) T=u1 ;; tcp) T=t1 ;; *) die "transport must be udp or tcp" ;; esac
EDGE="$EDGE_IP:${EDGE_PORT:-25060}" UAS_P="${UAS_PORT:-25070}" UAC_P="${UAC_PORT:-25080}"
ADMIN="$EDGE_IP:${ADMIN_PORT:-25090}"
check_tools
OUT="$(mktemp -d /tmp/register_rate.XXXXXX)"
trap cleanup EXIT
LIMIT=$((COUNT / RATE + 60))

"$SIPP" -sf "$HERE/uas_registrar.xml" -nostdin -i "$CORE_IP" -p "$UAS_P" -cp $((UAS_P + 1)) \
  -t "$T" -m "$COUNT" -timeout "${LIMIT}s" -trace_err -error_file "$OUT/registrar_errors.log" \
  >"$OUT/registrar.out" 2>&1 &
STARTED_PIDS+=($!)
wait_bound "$UAS_P" 10 || die "sipp registrar did not bind $UAS_P"
start_edge "$EDGE" "$TRANSPORT:$CORE_IP:$UAS_P" "$ADMIN" "$TRANSPORT" "$OUT/edge.log"

before="$(cpu_ticks "$EDGE_PID")"
t0="$(date +%s.%N)"
set +e
"$SIPP" "$EDGE" -sf "$HERE/uac_register.xml" -nostdin -i "$ACCESS_IP" -p "$UAC_P" \
  -cp $((UAC_P + 1)) -t "$T" -m "$COUNT" -r "$RATE" -timeout "${LIMIT}s" -timeout_error \
  -trace_err -error_file "$OUT/ua_errors.log" -trace_stat -stf "$OUT/ua_stats.csv" \
  >"$OUT/ua.out" 2>&1
rc=$?
set -e
t1="$(date +%s.%N)"
after="$(cpu_ticks "$EDGE_PID")" || die "edge died during the run (log: $OUT/edge.log)"
wall="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')"

report REGISTER "$COUNT" "$RATE" "$rc" "$OUT/ua_stats.csv" $((after - before)) "$wall"
echo "logs: $OUT"
exit "$rc"
