#!/usr/bin/env bash
# Sustained call rate through the edge (issue 12: lean transactions): SIPp uac → edge → SIPp
# uas (INVITE, 100, 180, 200, ACK, BYE, 200; SIPp's built-in scenarios) at RATE calls/s for
# DURATION s. Every 10 s it samples the edge's RSS and its transaction counts from /metrics;
# at the end it reports calls, failures, retransmissions, CPU per call, the RSS plateau and
# memory per call held (RSS growth ÷ the calls whose transactions are alive at once: RATE ×
# 32 s of RFC 3261/6026 wait timers), and whether `limits.max_transactions` was ever reached
# (503s). One JSON object with --json as the last argument.
#
#   bench/sipp/soak.sh [-r RATE] [-d DURATION_S]     # defaults: 2,000 calls/s for 600 s
set -euo pipefail
source "$(dirname "$0")/lib.sh"

RATE=2000 DURATION=600 JSON=0
[ "${*: -1}" = "--json" ] 2>/dev/null && { JSON=1; set -- "${@:1:$(($# - 1))}"; }
while getopts "r:d:" opt; do
  case "$opt" in
    r) RATE="$OPTARG" ;;
    d) DURATION="$OPTARG" ;;
    *) die "usage: $0 [-r RATE] [-d DURATION_S] [--json]" ;;
  esac
done
[ "$DURATION" -le 1800 ] && [ "$RATE" -le 10000 ] || die "bounded: at most 1,800 s and 10,000 calls/s"
EDGE="$EDGE_IP:${EDGE_PORT:-25060}" UAS_P="${UAS_PORT:-25070}" UAC_P="${UAC_PORT:-25080}"
ADMIN="$EDGE_IP:${ADMIN_PORT:-25090}"
check_tools
OUT="$(mktemp -d /tmp/soak.XXXXXX)"
trap cleanup EXIT
CALLS=$((RATE * DURATION))
LIMIT=$((DURATION + 60))

"$SIPP" -sn uas -nostdin -i "$CORE_IP" -p "$UAS_P" -cp $((UAS_P + 1)) -timeout "${LIMIT}s" \
  >"$OUT/uas.out" 2>&1 &
STARTED_PIDS+=($!)
wait_bound "$UAS_P" 10 || die "sipp uas did not bind $UAS_P"
start_edge "$EDGE" "udp:$CORE_IP:$UAS_P" "$ADMIN" udp "$OUT/edge.log"
metric() { curl -s -m 2 "http://$ADMIN/metrics" | awk -v m="$1" '$1 == m { print $NF; exit }'; }
rss_kb() { awk '/^VmRSS/ { print $2 }' "/proc/$EDGE_PID/status"; }
rss0="$(rss_kb)"
before="$(cpu_ticks "$EDGE_PID")"
"$SIPP" "$EDGE" -sn uac -nostdin -i "$ACCESS_IP" -p "$UAC_P" -cp $((UAC_P + 1)) \
  -m "$CALLS" -r "$RATE" -l $((RATE * 4)) -timeout "${LIMIT}s" -timeout_error \
  -trace_stat -stf "$OUT/uac_stats.csv" -fd 10 >"$OUT/uac.out" 2>&1 &
UAC_PID=$!
STARTED_PIDS+=("$UAC_PID")
max_tx=0 max_prog=0 max_rss=0 samples=""
for _ in $(seq 1 $(((LIMIT + 9) / 10))); do
  kill -0 "$UAC_PID" 2>/dev/null || break
  sleep 10
  tx="$(metric edge_transactions_active)" prog="$(metric edge_transactions_in_progress)" r="$(rss_kb)"
  [ "${tx:-0}" -gt "$max_tx" ] && max_tx="$tx"
  [ "${prog:-0}" -gt "$max_prog" ] && max_prog="$prog"
  [ "${r:-0}" -gt "$max_rss" ] && max_rss="$r"
  samples="$samples${samples:+,}[${tx:-0},${prog:-0},${r:-0}]"
done
wait "$UAC_PID" 2>/dev/null || true
after="$(cpu_ticks "$EDGE_PID")" || die "edge died (log $OUT/edge.log)"
ok="$(stat_column "$OUT/uac_stats.csv" 'SuccessfulCall(C)')"
failed="$(stat_column "$OUT/uac_stats.csv" 'FailedCall(C)')"
retr="$(stat_column "$OUT/uac_stats.csv" 'Retransmissions(C)')"
limit="$(metric edge_transactions_limit)"
# 5xx the edge sent: none come from the uas, so these are the edge's own (503 at the limit).
r503="$(curl -s -m 2 "http://$ADMIN/metrics" | awk '$1 ~ /^edge_sip_responses_total/ && $1 ~ /class="5xx"/ && $1 ~ /direction="out"/ { s += $NF } END { printf "%d", s }')"
us_per_call="$(awk -v t=$((after - before)) -v hz="$CLK_TCK" -v n="${ok:-0}" 'BEGIN { if (n > 0) printf "%.1f", t / hz * 1e6 / n; else print "null" }')"
per_call_b="$(awk -v a="$rss0" -v b="$max_rss" -v r="$RATE" 'BEGIN { printf "%d", (b - a) * 1024 / (r * 32) }')"
if [ "$JSON" = 1 ]; then
  printf '{"rate":%d,"duration_s":%d,"calls":%d,"ok":%s,"failed":%s,"retransmissions":%s,"cpu_us_per_call":%s,"rss_start_kb":%d,"rss_peak_kb":%d,"bytes_per_call_held":%d,"max_transactions_active":%d,"max_transactions_in_progress":%d,"transactions_limit":%s,"responses_5xx":%d,"samples":[%s]}\n' \
    "$RATE" "$DURATION" "$CALLS" "${ok:-0}" "${failed:-0}" "${retr:-0}" "$us_per_call" "$rss0" "$max_rss" "$per_call_b" "$max_tx" "$max_prog" "${limit:-0}" "$r503" "$samples"
else
  echo "$CALLS calls at $RATE/s over ${DURATION}s: $ok ok, $failed failed, $retr retransmissions; edge ${us_per_call} us/call"
  echo "edge RSS $((rss0 / 1024)) → peak $((max_rss / 1024)) MB (${per_call_b} B per call held);" \
    "transactions max $max_tx live, $max_prog in progress (limit $limit); 5xx sent: $r503"
fi
echo "logs: $OUT" >&2
