#!/usr/bin/env bash
# One benchmark command, side by side: the same SIPp/rtpload workloads against
#   (A) edge + rtprelay          (this workspace, release build)
#   (B) Kamailio 5.6 + rtpengine (bench/kamailio/edge.cfg; rtpengine userspace)
# each stepped up in rate until it fails, every system started fresh (new state directory) for
# every step. Writes runs.jsonl (one JSON line per step), header.md, report.md and PNG plots
# (bench/report.py) to OUT (default bench/reports/$(date +%F)). See bench/README.md.
#
#   CARGO_TARGET_DIR=... cargo build --release -p edge -p rtprelay -p bench
#   TARGET_DIR=/path/to/target bench/compare.sh            # ~12 min with the defaults
#   QUICK=1 OUT=/tmp/cmp MAX_LOAD=4 bench/compare.sh        # smoke run, ~2 s steps
#
# Environment:
#   BIN_DIR (default $TARGET_DIR/release, TARGET_DIR default <repo>/target): edge, rtprelay,
#     rtpload, mmsgfwd; OUT; DURATION (s per step, 10; QUICK=1: 2); MAX_LOAD (0.5: refuse to start,
#     exit 3, when the 1-minute load average is above it);
#   WORKLOADS ("register_forwarded register_absorbed calls media_calls rtp"); SYSTEMS
#     ("edge kamailio"); REG_RATES ("1000 2000 4000 6000" REGISTER/s, both REGISTER workloads);
#   CALL_RATES ("500 1000 2000 3000" calls/s); MEDIA_RATES ("200 500 1000" calls/s);
#   SOAK_RATE (2000 calls/s) and SOAK_DURATION (600 s; QUICK=1: 20) for the soak workload
#     (edge only: transactions in progress vs limits.max_transactions, RSS, memory per call);
#   KA_BINDINGS (100000 NATed bindings for the keepalives workload, edge only), KA_RATE (2000
#     REGISTER/s to create them), KA_INTERVAL (30 s ping interval), KA_WINDOW (60 s measured);
#   RTP_RATES ("50000 100000 150000 200000" packets/s); RTP_TARGETS ("io_uring fallback
#     rtpengine mmsgfwd"; mmsgfwd = bench's plain recvmmsg/sendmmsg forwarder, the baseline); RTP_STREAMS (2000); KAM_CHILDREN (4 UDP workers); NICE (0).
# Loopback only: 127.0.1.1 proxy, 127.0.1.2 callers/UAs, 127.0.1.3 core (SIPp uas/registrar),
# 127.0.1.4 relay media and control. Ports 35060-35590 and media 40000-59999 on 127.0.1.4.
# Every process started is stopped by PID (trap); every loop and wait is bounded.
set -euo pipefail
BENCH="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$BENCH/.." && pwd)"
# shellcheck source=bench/sipp/lib.sh
source "$BENCH/sipp/lib.sh"   # cpu_ticks, descendants, wait_http, die

TARGET_DIR="${TARGET_DIR:-$ROOT/target}"
BIN_DIR="${BIN_DIR:-$TARGET_DIR/release}"
EDGE_BIN="$BIN_DIR/edge" RELAY_BIN="$BIN_DIR/rtprelay" LOAD_BIN="$BIN_DIR/rtpload"
if [ "${QUICK:-0}" = 1 ]; then DURATION="${DURATION:-2}"; else DURATION="${DURATION:-10}"; fi
MAX_LOAD="${MAX_LOAD:-0.5}"
WORKLOADS="${WORKLOADS:-register_forwarded register_absorbed calls media_calls rtp keepalives soak}"
KA_BINDINGS="${KA_BINDINGS:-100000}" KA_RATE="${KA_RATE:-2000}"
SOAK_RATE="${SOAK_RATE:-2000}"
if [ "${QUICK:-0}" = 1 ]; then SOAK_DURATION="${SOAK_DURATION:-20}"; else SOAK_DURATION="${SOAK_DURATION:-600}"; fi
if [ "${QUICK:-0}" = 1 ]; then KA_INTERVAL="${KA_INTERVAL:-10}" KA_WINDOW="${KA_WINDOW:-10}"; else KA_INTERVAL="${KA_INTERVAL:-30}" KA_WINDOW="${KA_WINDOW:-60}"; fi
SYSTEMS="${SYSTEMS:-edge kamailio}"
REG_RATES="${REG_RATES:-1000 2000 4000 6000}"
CALL_RATES="${CALL_RATES:-500 1000 2000 3000}"
MEDIA_RATES="${MEDIA_RATES:-200 500 1000}"
RTP_RATES="${RTP_RATES:-50000 100000 150000 200000}"
RTP_TARGETS="${RTP_TARGETS:-io_uring fallback rtpengine mmsgfwd}"
RTP_STREAMS="${RTP_STREAMS:-2000}"
KAM_CHILDREN="${KAM_CHILDREN:-4}"
NICE="${NICE:-0}"
OUT="${OUT:-$BENCH/reports/$(date +%F)}"
PY=/usr/bin/python3
PROXY_IP=127.0.1.1 UA_IP=127.0.1.2 CORE_IP=127.0.1.3 RELAY_IP=127.0.1.4
SIP_PORT=35060 CORE_PORT=35070 UA_PORT=35080 ADMIN_PORT=35090 RELAY_ADMIN=35091 CTL_PORT=35222
MEDIA_PORTS=40000-59999

# --- refuse a busy machine -----------------------------------------------------------------
load1="$(cut -d' ' -f1 /proc/loadavg)"
if awk -v l="$load1" -v m="$MAX_LOAD" 'BEGIN { exit !(l > m) }'; then
  echo "compare.sh: machine busy: 1-minute load average $load1 > MAX_LOAD $MAX_LOAD;" \
    "numbers would be noise. Wait, or set MAX_LOAD to override." >&2
  exit 3
fi

command -v "$SIPP" >/dev/null || die "sipp not found (apt-get install sip-tester)"
case " $RTP_TARGETS " in *" mmsgfwd "*) FWD_BIN="$BIN_DIR/mmsgfwd" ;; *) FWD_BIN="" ;; esac
for b in "$EDGE_BIN" "$RELAY_BIN" "$LOAD_BIN" ${FWD_BIN:+"$FWD_BIN"}; do
  [ -x "$b" ] || die "$b missing: cargo build --release -p edge -p rtprelay -p bench (BIN_DIR/TARGET_DIR)"
done
command -v kamailio >/dev/null || die "kamailio not found"
command -v rtpengine >/dev/null || die "rtpengine not found"
[ -x "$PY" ] || die "$PY not found"

mkdir -p "$OUT"
RUNS="$OUT/runs.jsonl"
: >"$RUNS"
WORK="$(mktemp -d /tmp/compare.XXXXXX)"

# --- processes ------------------------------------------------------------------------------
STEP_PIDS=()
stop_pid() { # PID: TERM, up to 5 s, KILL; its descendants too (Kamailio's workers).
  local pid=$1 kids i
  kids="$(descendants "$pid" 2>/dev/null | tail -n +2 | tr '\n' ' ')"
  kill "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  # shellcheck disable=SC2086
  kill -9 "$pid" $kids 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
stop_step() {
  local pid
  for pid in "${STEP_PIDS[@]}"; do stop_pid "$pid"; done
  STEP_PIDS=()
}
trap 'stop_step' EXIT
trap 'exit 130' INT TERM

# peak RSS in kB: VmHWM summed over PID and its descendants.
peak_rss_kb() {
  local total=0 pid v
  for pid in $(descendants "$1"); do
    v="$(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status" 2>/dev/null)" || continue
    total=$((total + ${v:-0}))
  done
  echo "$total"
}

# wait_udp IP PORT SECONDS [PID]: until a UDP socket is bound there (and PID, if given, still
# runs: a stale process holding the port must not pass for the one just started).
wait_udp() {
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    if [ -n "${4:-}" ] && ! kill -0 "$4" 2>/dev/null; then return 1; fi
    ss -Hunl "( src $1:$2 )" 2>/dev/null | grep -q . && return 0
    sleep 0.1
  done
  return 1
}

start_bg() { # LOG CMD...: starts CMD in the background (nice), sets BG_PID, records it.
  local log=$1
  shift
  nice -n "$NICE" "$@" >"$log" 2>&1 &
  BG_PID=$!
  STEP_PIDS+=("$BG_PID")
}

# --- systems --------------------------------------------------------------------------------
# start_proxy SYSTEM WORKLOAD STATE: the proxy (and relay for media_calls); sets PROCS
# ("name=pid ...") for CPU and RSS accounting.
start_proxy() {
  local sys=$1 w=$2 st=$3 mode=mirror mmode=never relay=()
  PROCS=()
  case "$w" in
    register_absorbed) mode=contact ;;
    media_calls) mmode=always ;;
  esac
  if [ "$sys" = edge ]; then
    if [ "$w" = media_calls ]; then
      start_bg "$st/rtprelay.log" "$RELAY_BIN" --control-udp "$RELAY_IP:$CTL_PORT" --listen "$RELAY_IP" \
        --ports "$MEDIA_PORTS" --admin "$RELAY_IP:$RELAY_ADMIN" --log-level warn
      PROCS+=("rtprelay=$BG_PID")
      wait_udp "$RELAY_IP" "$CTL_PORT" 10 "$BG_PID" || die "rtprelay did not bind (log $st/rtprelay.log)"
      relay=(--relay "$RELAY_IP:$CTL_PORT" --media-check-interval 0)
    fi
    cat >"$st/edge.toml" <<EOF
[limits]
max_transactions = 2000000
max_transactions_per_source = 1000000
[proxy]
route_secret_file = "$st/route.secret"
[registrar]
max_bindings_per_source = 1000000
max_bindings = 10000000
store_path = "$st/location.log"
[log]
level = "warn"
EOF
    (cd "$st" && exec nice -n "$NICE" "$EDGE_BIN" --config "$st/edge.toml" --listen-udp "$PROXY_IP:$SIP_PORT" \
      --core "udp:$CORE_IP:$CORE_PORT" --admin "$PROXY_IP:$ADMIN_PORT" --source-rate 0 \
      --health-interval 0 --registrar-mode "$mode" --media-mode "$mmode" "${relay[@]}" \
      >"$st/edge.log" 2>&1) &
    BG_PID=$!
    STEP_PIDS+=("$BG_PID")
    PROCS+=("edge=$BG_PID")
    if ! wait_http "$PROXY_IP:$ADMIN_PORT" /health 15 || ! kill -0 "$BG_PID" 2>/dev/null; then
      die "edge did not answer /health (log $st/edge.log)"
    fi
  else
    local defs=()
    [ "$w" = register_absorbed ] && defs=(-A WITH_LOCAL_REGISTRAR)
    if [ "$w" = media_calls ]; then
      defs=(-A WITH_RTPENGINE)
      start_bg "$st/rtpengine.log" rtpengine --config-file=none --table=-1 --interface="$RELAY_IP" \
        --listen-ng="$RELAY_IP:$CTL_PORT" --listen-cli="$RELAY_IP:$((CTL_PORT + 1))" \
        --foreground --log-stderr --log-level=4 --delete-delay=0 \
        --port-min="${MEDIA_PORTS%-*}" --port-max="${MEDIA_PORTS#*-}"
      PROCS+=("rtpengine=$BG_PID")
      wait_udp "$RELAY_IP" "$CTL_PORT" 10 "$BG_PID" || die "rtpengine did not bind (log $st/rtpengine.log)"
    fi
    sed -e "s/@CHILDREN@/$KAM_CHILDREN/" -e "s/@LISTEN@/$PROXY_IP:$SIP_PORT/" \
      -e "s/@RTPENGINE_NG@/$RELAY_IP:$CTL_PORT/" -e "s/@CORE_IP@/$CORE_IP/" \
      -e "s/@CORE_PORT@/$CORE_PORT/" "$BENCH/kamailio/edge.cfg" >"$st/kamailio.cfg"
    start_bg "$st/kamailio.log" kamailio -f "$st/kamailio.cfg" -DD -E -m 256 -M 32 -w "$st" -Y "$st" "${defs[@]}"
    PROCS+=("kamailio=$BG_PID")
    wait_udp "$PROXY_IP" "$SIP_PORT" 15 "$BG_PID" || die "kamailio did not bind (log $st/kamailio.log)"
    sleep 0.5 # workers forked after the bind
  fi
}

sys_label() { if [ "$1" = edge ]; then echo "edge+rtprelay"; else echo "kamailio+rtpengine"; fi; }

# --- one SIPp step --------------------------------------------------------------------------
# sipp_step WORKLOAD SYSTEM RATE: prints the JSON line to RUNS; returns 1 if the step failed.
sipp_step() {
  local w=$1 sys=$2 rate=$3 st per=1 rtd=1 callrate calls limit conc tail=0 note=""
  st="$(mktemp -d "$WORK/$w-$sys-$rate.XXXX")"
  local core=(-sn uas) uac=(-sn uac) unit="calls/s"
  case "$w" in
    register_forwarded)
      core=(-sf "$BENCH/sipp/uas_registrar.xml") uac=(-sf "$BENCH/sipp/uac_register.xml") unit="REGISTER/s" ;;
    register_absorbed)
      core=(-sf "$BENCH/sipp/uas_registrar.xml") uac=(-sf "$BENCH/sipp/uac_register_refresh.xml")
      per=5 rtd=5 unit="REGISTER/s"
      note="REGISTER absorbed: each SIPp call is 1 REGISTER + 4 refreshes (same Call-ID); edge (contact mode) forwards the first to the core and answers the refreshes, Kamailio save(\"location\") answers all five itself." ;;
    media_calls)
      sed "s#pcap/g711a-5s.pcap#$BENCH/sipp/pcap/g711a-5s.pcap#" "$BENCH/sipp/uac_rtp.xml" >"$st/uac_rtp.xml"
      core=(-sn uas -rtp_echo) uac=(-sf "$st/uac_rtp.xml") tail=6
      note="media calls: 5 s of G.711 played by SIPp (one pcap thread per call) and echoed by the uas; edge runs with --media-check-interval 0 (no Q per call), Kamailio uses the rtpengine module (ng protocol)." ;;
  esac
  callrate=$((rate / per))
  calls=$((callrate * DURATION))
  [ "$calls" -ge 1 ] || calls=1
  conc=$((callrate * (tail + 4) + 100))
  limit=$((DURATION + tail + 30))
  (cd "$st" && exec "$SIPP" "${core[@]}" -nostdin -i "$CORE_IP" -p "$CORE_PORT" -timeout "${limit}s" \
    -trace_err -error_file "$st/core_errors.log" >"$st/core.out" 2>&1) &
  local core_pid=$!
  STEP_PIDS+=("$core_pid")
  wait_udp "$CORE_IP" "$CORE_PORT" 10 "$core_pid" || die "sipp core did not bind (log $st/core.out)"
  start_proxy "$sys" "$w" "$st"

  local p name pid now before=() rss=() cpu=() i
  for p in "${PROCS[@]}"; do before+=("$(cpu_ticks "${p#*=}")"); done
  (cd "$st" && exec nice -n "$NICE" "$SIPP" "$PROXY_IP:$SIP_PORT" "${uac[@]}" -nostdin -i "$UA_IP" \
    -p "$UA_PORT" -m "$calls" -r "$callrate" -l "$conc" -timeout "${limit}s" -timeout_error \
    -trace_err -error_file "$st/uac_errors.log" -trace_stat -stf "$st/uac_stats.csv" -fd 1 \
    -trace_rtt -rtt_freq 1 >"$st/uac.out" 2>&1) || true
  i=0
  for p in "${PROCS[@]}"; do
    name="${p%%=*}" pid="${p#*=}"
    now="$(cpu_ticks "$pid")" || { note="$note $name exited during the step (log in $st)."; now="${before[$i]}"; }
    cpu+=("$name=$((now - before[i]))")
    rss+=("$name=$(peak_rss_kb "$pid")")
    i=$((i + 1))
  done
  # Proof that media flowed: packets the relay forwarded during the step.
  local relay_pkts=""
  if [ "$w" = media_calls ]; then
    if [ "$sys" = edge ]; then
      relay_pkts="$(curl -fsS -m 3 "http://$RELAY_IP:$RELAY_ADMIN/metrics" 2>/dev/null |
        awk '/^rtprelay_packets_forwarded_total/ { n += $NF } END { printf "%d", n }')"
    else
      relay_pkts="$(rtpengine-ctl -ip "$RELAY_IP" -port $((CTL_PORT + 1)) list totals 2>/dev/null |
        awk -F: '/^ *Total relayed packets *:/ { gsub(/ /, "", $2); print $2; exit }')"
    fi
  fi
  stop_step
  local rtt
  rtt="$(find "$st" -maxdepth 1 -name '*_rtt.csv' | head -1)"
  local line
  line="$("$PY" "$BENCH/report.py" sipp --stat "$st/uac_stats.csv" --rtt "${rtt:-/nonexistent}" \
    --workload "$w" --system "$(sys_label "$sys")" --offered "$rate" --unit "$unit" \
    --ops-per-call "$per" --rtd-per-call "$rtd" --attempted "$calls" --duration "$DURATION" \
    --cpu "${cpu[@]}" --rss "${rss[@]}" --relay-packets "${relay_pkts:-}" --note "$note")" || { echo "  no result (logs $st)" >&2; return 1; }
  echo "$line" >>"$RUNS"
  summarize "$line" "$st"
  grep -q '"pass": true' <<<"$line"
}

summarize() {
  "$PY" -c 'import json,sys; l=json.loads(sys.argv[1]); print("  %-20s %-18s offered %-7g held %-8s failed %-5s retr %-5s p99 %s ms  cpu %s us/op  %s  (%s)" % (l["workload"], l["system"], l["offered"], l["held"], l["failed"], l["retransmissions"], l["p99_ms"], l["cpu_us_per_op"], "ok" if l["pass"] else "FAIL", sys.argv[2]))' "$1" "$2" >&2
}

# --- one RTP step (relay_compare.sh) --------------------------------------------------------
rtp_step() {
  local target=$1 rate=$2 st pps out label
  st="$(mktemp -d "$WORK/rtp-$target-$rate.XXXX")"
  pps="$(awk -v r="$rate" -v s="$RTP_STREAMS" 'BEGIN { printf "%g", r / s / 2 }')"
  case "$target" in rtpengine|mmsgfwd) label=$target ;; *) label="rtprelay-$target" ;; esac
  out="$(BIN_DIR="$BIN_DIR" TARGETS="$target" PPS="$pps" STREAMS="$RTP_STREAMS" DURATION="$DURATION" \
    CTL=35390 ADMIN=35590 NICE="$NICE" LOG_DIR="$st" "$BENCH/relay_compare.sh" 2>"$st/relay_compare.err" | tail -1)" || true
  if [ -z "$out" ]; then
    echo "  rtp $label $rate: no result (logs $st)" >&2
    echo "{\"workload\":\"rtp\",\"system\":\"$label\",\"offered\":$rate,\"unit\":\"packets/s\",\"pass\":false,\"note\":\"relay_compare.sh gave no result at $rate pps\"}" >>"$RUNS"
    return 1
  fi
  local line
  line="$("$PY" "$BENCH/report.py" rtp --line "$out" --system "$label" --offered "$rate" --duration "$DURATION")"
  echo "$line" >>"$RUNS"
  summarize "$line" "$st"
  grep -q '"pass": true' <<<"$line"
}

# --- header ---------------------------------------------------------------------------------
{
  echo "# edge + rtprelay vs Kamailio + rtpengine — $(date +%F)"
  echo
  echo "- command: \`$(printf '%q ' "$0" "$@")\` (env: DURATION=$DURATION QUICK=${QUICK:-0} WORKLOADS=\"$WORKLOADS\" SYSTEMS=\"$SYSTEMS\" REG_RATES=\"$REG_RATES\" CALL_RATES=\"$CALL_RATES\" MEDIA_RATES=\"$MEDIA_RATES\" RTP_RATES=\"$RTP_RATES\" RTP_TARGETS=\"$RTP_TARGETS\" KAM_CHILDREN=$KAM_CHILDREN NICE=$NICE)"
  echo "- git commit: $(git -C "$ROOT" rev-parse HEAD 2>/dev/null)$(git -C "$ROOT" diff --quiet 2>/dev/null || echo ' (uncommitted changes)')"
  echo "- date: $(date -Is)"
  echo "- load average at start: $(cut -d' ' -f1-3 /proc/loadavg) (MAX_LOAD $MAX_LOAD)"
  echo "- kernel: $(uname -sr), $(nproc) CPUs"
  echo "- peers: $(kamailio -v 2>/dev/null | head -1 | sed 's/^version: //'), rtpengine $(rtpengine --version 2>&1 | sed -n 's/^Version: //p' | head -1), $("$SIPP" -v 2>&1 | grep -o 'SIPp v[^ ]*' | head -1)"
  echo "- binaries: $BIN_DIR"
  cat <<'EOF'

## What runs

Every step starts the system under test fresh, with a new state directory (`mktemp -d`): the
core (SIPp uas or `uas_registrar.xml` on 127.0.1.3), the proxy on 127.0.1.1:35060 (and the
relay for media), then a SIPp client on 127.0.1.2 at the offered rate for DURATION seconds.
CPU = utime+stime from `/proc/PID/stat` of the processes under test (Kamailio: the main process
and all its workers) read before and after the client; RSS = VmHWM at the end of the step.

- **A: edge + rtprelay** — `edge --registrar-mode mirror|contact --media-mode never|always
  --source-rate 0 --health-interval 0 --media-check-interval 0`, log level warn, limits on
  transactions and bindings per source raised (one SIPp = one source); rtprelay default config
  (datapath auto = io_uring here, threads = CPUs) with `--listen 127.0.1.4`.
- **B: Kamailio 5.6 + rtpengine** — `bench/kamailio/edge.cfg` (`-m 256 -M 32`, KAM_CHILDREN UDP
  workers, tm stateful forwarding, record_route on INVITE, force_rport). REGISTER forwarded:
  plain `t_relay()` to the core (no Contact rewriting, no local binding: less work than the
  edge's mirror mode, which rewrites the Contact and keeps the binding). REGISTER absorbed:
  `save("location")` in memory — Kamailio answers every REGISTER itself, the edge forwards the
  first of each binding to the core and absorbs the refreshes. Media: the `rtpengine` module
  (ng protocol, `--listen-ng`), rtpengine 10.5 userspace (`--table=-1 --delete-delay=0`); the
  edge drives rtprelay over the rtpproxy protocol.
- **RTP load** — `bench/relay_compare.sh` (rtpload, RTP_STREAMS streams both ways, 172-byte
  packets) against rtprelay io_uring, rtprelay fallback (recvmmsg/sendmmsg), rtpengine over
  its rtpproxy-compatible `--listen-udp`, and `mmsgfwd` (bench/src/bin/mmsgfwd.rs): a plain
  recvmmsg/sendmmsg forwarder (epoll per thread, 2 threads pinned, batches of 64, symmetric
  latching, nothing else) as the ceiling; *÷mmsgfwd* is each target's CPU/packet ÷ mmsgfwd's at
  the same rate (issue 12: io_uring ≤ 1.1).
- Media steps: CPU is counted from the first call to the last BYE (step + 5.5 s); a relay's
  background cost over that time (timers, idle polling) is part of it, so CPU per call at low
  rates is inflated and falls with the rate. *relay pkts/call* ≈ 500 shows the audio crossed
  the relay both ways.
- Kamailio's UDP workers are separate processes: a 180 and the 200 of one INVITE can leave
  in the wrong order, and SIPp's built-in uac then aborts the call on the late 180 (counted
  failed; in the smoke run a few per 1,000 calls). That is Kamailio's behaviour, not a bench
  error (the edge showed no such failure in the smoke run).
- SIPp itself runs on the same 2 CPUs: at high rates it competes with the system under test
  (and plays one pcap thread per media call), so failures at the top rates may be SIPp's.
EOF
} >"$OUT/header.md"

# --- run ------------------------------------------------------------------------------------
echo "compare.sh: results in $OUT, logs in $WORK (load $load1)" >&2
for w in $WORKLOADS; do
  if [ "$w" = soak ]; then
    # Edge only: calls at SOAK_RATE for SOAK_DURATION s, transactions and RSS sampled.
    echo "== soak (${SOAK_RATE} calls/s for ${SOAK_DURATION}s)" >&2
    sk="$(EDGE_BIN="$EDGE_BIN" EDGE_PORT=$SIP_PORT UAS_PORT=$CORE_PORT UAC_PORT=$UA_PORT \
      ADMIN_PORT=$ADMIN_PORT "$BENCH/sipp/soak.sh" -r "$SOAK_RATE" -d "$SOAK_DURATION" --json \
      2>"$WORK/soak.err" | tail -1)" || true
    if [ -n "$sk" ]; then
      "$PY" -c 'import json,sys; l=json.loads(sys.argv[1]); l.update(workload="soak", system="edge", offered=l["rate"], unit="calls/s"); l["pass"]=l["failed"] <= 0.01 * l["calls"] and l["responses_5xx"] == 0; print(json.dumps(l))' "$sk" >>"$RUNS"
      echo "  soak: $sk" >&2
    else
      echo "  soak: no result ($WORK/soak.err)" >&2
    fi
    continue
  fi
  if [ "$w" = keepalives ]; then
    # Edge only (the goal is a share of one core, not a ratio): KA_BINDINGS NATed bindings
    # registered through SIPp, pinged every KA_INTERVAL s, measured over KA_WINDOW s.
    echo "== keepalives ($KA_BINDINGS bindings, every ${KA_INTERVAL}s)" >&2
    ka="$(EDGE_BIN="$EDGE_BIN" EDGE_PORT=$SIP_PORT UAS_PORT=$CORE_PORT UAC_PORT=$UA_PORT \
      ADMIN_PORT=$ADMIN_PORT "$BENCH/sipp/keepalive_load.sh" -n "$KA_BINDINGS" -r "$KA_RATE" \
      -i "$KA_INTERVAL" -w "$KA_WINDOW" --json 2>"$WORK/keepalives.err" | tail -1)" || true
    if [ -n "$ka" ]; then
      "$PY" -c 'import json,sys; l=json.loads(sys.argv[1]); l.update(workload="keepalives", system="edge", offered=l["bindings_requested"], unit="bindings", passed=l["edge_core_pct"] < 25 and l["pings_failed"] <= 0.01 * max(l["pings_sent"], 1)); l["pass"]=l.pop("passed"); print(json.dumps(l))' "$ka" >>"$RUNS"
      echo "  keepalives: $ka" >&2
    else
      echo "  keepalives: no result ($WORK/keepalives.err)" >&2
    fi
    continue
  fi
  case "$w" in
    register_forwarded|register_absorbed) rates="$REG_RATES" ;;
    calls) rates="$CALL_RATES" ;;
    media_calls) rates="$MEDIA_RATES" ;;
    rtp) rates="$RTP_RATES" ;;
    *) die "unknown workload $w" ;;
  esac
  echo "== $w ($rates)" >&2
  if [ "$w" = rtp ]; then systems="$RTP_TARGETS"; else systems="$SYSTEMS"; fi
  stopped=" "
  for rate in $rates; do
    for sys in $systems; do
      case "$stopped" in *" $sys "*) continue ;; esac
      if [ "$w" = rtp ]; then
        rtp_step "$sys" "$rate" || stopped="$stopped$sys "
      else
        sipp_step "$w" "$sys" "$rate" || stopped="$stopped$sys "
      fi
      sleep 1
    done
  done
done

"$PY" "$BENCH/report.py" render --jsonl "$RUNS" --header "$OUT/header.md" --out "$OUT"
echo "logs: $WORK" >&2
