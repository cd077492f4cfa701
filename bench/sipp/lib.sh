# Shared helpers for the SIPp bench scripts (sourced, not run). Loopback only; every wait bounded;
# only the processes started here are stopped, by PID.

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
SIPP="${SIPP:-sipp}"
EDGE_BIN="${EDGE_BIN:-$ROOT/target/release/edge}"
CLK_TCK="$(getconf CLK_TCK)"
STARTED_PIDS=()
# The edge tells core from access side by source IP: keep the peers on different loopback IPs.
EDGE_IP=127.0.0.1
ACCESS_IP=127.0.0.2
CORE_IP=127.0.0.3

die() { echo "error: $*" >&2; exit 1; }

cleanup() {
  local pid
  for pid in "${STARTED_PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  sleep 0.3
  for pid in "${STARTED_PIDS[@]}"; do
    kill -9 "$pid" 2>/dev/null || true
  done
}

check_tools() {
  command -v "$SIPP" >/dev/null || die "sipp not found (apt-get install sip-tester)"
  [ -x "$EDGE_BIN" ] || die "$EDGE_BIN not found: run 'cargo build --release -p edge' (or set EDGE_BIN)"
}

# cpu_ticks PID: utime+stime of the process and its live descendants (all threads included), in
# clock ticks. proc(5): fields 14 and 15 of /proc/PID/stat; the command name in field 2 may
# contain spaces, so fields are counted after its closing parenthesis. Descendants matter for a
# multi-process baseline (kamailio-edge.sh); the edge is one process.
cpu_ticks() {
  [ -r "/proc/$1/stat" ] || return 1
  local total=0 pid rest
  for pid in $(descendants "$1"); do
    rest="$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null)" || continue
    total=$((total + $(awk '{ print $12 + $13 }' <<<"$rest")))
  done
  echo "$total"
}

# descendants PID: PID and every live process below it.
descendants() {
  local child
  echo "$1"
  for child in $(pgrep -P "$1" 2>/dev/null); do
    descendants "$child"
  done
}

# http_ok ADDR PATH: true if GET answers 200.
http_ok() {
  curl -fsS -m 2 -o /dev/null "http://$1$2" 2>/dev/null
}

# wait_http ADDR PATH SECONDS
wait_http() {
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    http_ok "$1" "$2" && return 0
    sleep 0.1
  done
  return 1
}

# wait_bound PORT SECONDS: until some process listens on 127.0.0.1:PORT (UDP or TCP).
wait_bound() {
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    if ss -Hln "( sport = :$1 )" 2>/dev/null | grep -q .; then return 0; fi
    sleep 0.1
  done
  return 1
}

# start_edge LISTEN_ADDR CORE ADMIN_ADDR TRANSPORT LOG: starts the edge, sets EDGE_PID.
start_edge() {
  local tcp=()
  [ "$4" = tcp ] && tcp=(--listen-tcp "$1")
  # MEDIA_MODE=always RELAY=ip:port anchors media on a relay; default: SIP only.
  local media=(--media-mode "${MEDIA_MODE:-never}")
  [ -n "${RELAY:-}" ] && media+=(--relay "$RELAY")
  # The load generator is one source sending far above a phone's rate: a trunk, not a phone.
  # The per-source rate limit is off unless SOURCE_RATE says otherwise (EDGE_ARGS: more flags).
  local limits=(--source-rate "${SOURCE_RATE:-0}")
  # shellcheck disable=SC2206
  local extra=(${EDGE_ARGS:-})
  # A fresh state directory next to the log (never the caller's working directory: a run must
  # not leave a location log that the next run loads and pings), and the limits of a trunk.
  local state
  state="$(dirname "$5")/edge-state"
  mkdir -p "$state"
  local cfg=()
  if [[ " ${EDGE_ARGS:-} " != *" --config "* ]]; then
    printf '[registrar]\nstore_path = "%s"\nmax_bindings_per_source = 1000000\n' \
      "$state/location.log" >"$state/edge.toml"
    cfg=(--config "$state/edge.toml")
  fi
  (cd "$state" && exec "$EDGE_BIN" "${cfg[@]}" --listen-udp "$1" "${tcp[@]}" --core "$2" \
    --admin "$3" "${media[@]}" "${limits[@]}" "${extra[@]}") >"$5" 2>&1 &
  EDGE_PID=$!
  STARTED_PIDS+=("$EDGE_PID")
  wait_http "$3" /health 15 || { tail -20 "$5" >&2; die "edge did not answer /health on $3"; }
}

# stat_column CSV NAME: the last line's value of a SIPp statistics column.
stat_column() {
  awk -F';' -v name="$2" '
    NR == 1 { for (i = 1; i <= NF; i++) if ($i == name) col = i; next }
    NF > 1 { last = $col }
    END { print (col ? last : "?") }' "$1"
}

# report KIND COUNT RATE EXIT CSV TICKS WALL_SECONDS
report() {
  local ok failed cpu_s per
  ok="$(stat_column "$5" 'SuccessfulCall(C)')"
  failed="$(stat_column "$5" 'FailedCall(C)')"
  cpu_s="$(awk -v t="$6" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t / hz }')"
  per="$(awk -v t="$6" -v hz="$CLK_TCK" -v n="$ok" 'BEGIN { if (n > 0) printf "%.1f", t / hz * 1e6 / n; else print "n/a" }')"
  echo "$1: $2 requested at $3/s over ${7}s: $ok successful, $failed failed (sipp exit $4)"
  echo "edge CPU: ${cpu_s}s user+system = ${per} us per successful $1"
}
