#!/usr/bin/env bash
# Kamailio 5.6 dressed up as `edge`: accepts the edge's CLI (the subset the tests and bench use)
# and runs a stateful proxy with the same routing policy, plus a static admin endpoint
# (/health, empty /metrics). Two uses:
#   - a known-good proxy to check the e2e harness and scenarios against:
#       E2E_EDGE_BIN=$PWD/bench/sipp/kamailio-edge.sh cargo test -p e2e --test edge_dialogs
#     (metrics assertions cannot pass: Kamailio exports none here);
#   - a baseline for the bench scripts: EDGE_BIN=bench/sipp/kamailio-edge.sh bench/sipp/callrate.sh
#
# Policy (as the edge's): requests from the first --core go to their Request-URI, all others to
# the first core; Record-Route on dialog-creating requests; rport forced (RFC 3581); OPTIONS to the
# proxy itself answered 200; 3xx recursed (uac_redirect) unless --recurse-3xx false.
set -euo pipefail

UDP=() TCP=() CORE="" ADMIN="" RECURSE=1
while [ $# -gt 0 ]; do
  case "$1" in
    --listen-udp) UDP+=("$2"); shift 2 ;;
    --listen-tcp) TCP+=("$2"); shift 2 ;;
    --core) [ -z "$CORE" ] && CORE="$2"; shift 2 ;;
    --admin) ADMIN="$2"; shift 2 ;;
    --recurse-3xx) [ "$2" = false ] && RECURSE=0; shift 2 ;;
    --trusted|--forking|--config) shift 2 ;;
    --no-record-route) shift ;;
    *) echo "kamailio-edge: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -n "$CORE" ] || { echo "kamailio-edge: --core is required" >&2; exit 2; }
CORE_T=udp
case "$CORE" in udp:*) CORE="${CORE#udp:}" ;; tcp:*) CORE="${CORE#tcp:}"; CORE_T=tcp ;; esac
CORE_IP="${CORE%:*}" CORE_PORT="${CORE##*:}"

DIR="$(mktemp -d /tmp/kamailio-edge.XXXXXX)"
{
  echo '#!KAMAILIO'
  echo 'debug=1'
  echo 'log_stderror=yes'
  echo 'children=2'
  echo 'tcp_children=2'
  echo 'auto_aliases=no'
  echo 'dns=no'
  echo 'rev_dns=no'
  for a in "${UDP[@]}"; do echo "listen=udp:$a"; done
  for a in "${TCP[@]}"; do echo "listen=tcp:$a"; done
  [ ${#TCP[@]} -eq 0 ] && echo 'disable_tcp=yes'
  cat <<CFG
mpath="/usr/lib/x86_64-linux-gnu/kamailio/modules/"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "acc.so"
loadmodule "uac_redirect.so"
loadmodule "xlog.so"

request_route {
  if (!mf_process_maxfwd_header("10")) { sl_send_reply("483", "Too Many Hops"); exit; }
  force_rport();
  if (is_method("OPTIONS") && uri == myself && \$rU == \$null) { sl_send_reply("200", "OK"); exit; }
  if (is_method("CANCEL")) { if (t_check_trans()) { t_relay(); } exit; }
  if (has_totag()) {
    if (loose_route()) { t_relay(); exit; }
    if (is_method("ACK") && t_check_trans()) { t_relay(); exit; }
  }
  if (is_method("INVITE|SUBSCRIBE") && !has_totag()) { record_route(); }
  if (\$si == "$CORE_IP" && \$sp == $CORE_PORT) { t_relay(); exit; }
  \$du = "sip:$CORE_IP:$CORE_PORT;transport=$CORE_T";
  if (is_method("INVITE")) { t_on_failure("REDIRECT"); }
  t_relay();
  exit;
}

failure_route[REDIRECT] {
  if (t_is_canceled()) { exit; }
  if ($RECURSE == 1 && t_check_status("3[0-9][0-9]")) {
    get_redirects("*");
    t_relay();
  }
}
CFG
} >"$DIR/kamailio.cfg"

mkdir -p "$DIR/admin"
echo ok >"$DIR/admin/health"
: >"$DIR/admin/metrics"
PIDS=()
stop() { kill "${PIDS[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$DIR"; }
trap stop EXIT
trap 'exit 0' TERM INT
kamailio -f "$DIR/kamailio.cfg" -DD -E -m 64 -M 16 -w "$DIR" -Y "$DIR" &
PIDS+=($!)
if [ -n "$ADMIN" ]; then
  python3 -m http.server "${ADMIN##*:}" --bind "${ADMIN%:*}" --directory "$DIR/admin" \
    >/dev/null 2>&1 &
  PIDS+=($!)
fi
wait "${PIDS[0]}"
