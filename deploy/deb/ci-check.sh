#!/usr/bin/env bash
# Build the edge-sbc Debian package, install it with `dpkg -i` on this machine, check what it
# installed (files, owners, modes, conffiles, user, state directory), run both installed daemons
# the way their units do (user edge-sbc, the unit's limits, capabilities, umask, environment,
# working directory and config; NOTIFY_SOCKET and WATCHDOG_USEC like Type=notify/WatchdogSec=)
# and see them answer, stop them with SIGTERM and expect exit 0, then `systemd-analyze verify`
# and `systemd-analyze security --offline=true` on the installed units.
#
# Run as root from anywhere in the repository: `bash deploy/deb/ci-check.sh` (.ci/run does).
# Needs cargo-deb (`cargo install cargo-deb --locked`), dpkg-dev (dpkg-shlibdeps for $auto),
# binutils (strip, objcopy, readelf), systemd (systemd-analyze, sysusers, tmpfiles), util-linux
# (setpriv, prlimit), iproute2 (ss) and socat. Re-running is fine: dpkg -i reinstalls. Exits
# non-zero with a "ci-check: FAIL:" line on the first failed check; stops what it started (by
# PID) in every case.
set -euo pipefail
cd "$(dirname "$0")/../.."

readonly PKG=edge-sbc
readonly USER_NAME=edge-sbc
readonly STATE_DIR=/var/lib/edge-sbc    # edge.service: StateDirectory=, WorkingDirectory=
readonly RUN_DIR=/run/rtprelay          # rtprelay.service: RuntimeDirectory=, WorkingDirectory=
readonly UNIT_DIR=/usr/lib/systemd/system
readonly SECURITY_MAX=3.0               # systemd-analyze security exposure, 0..10, lower is better
readonly TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
readonly DEB_DIR="$TARGET_DIR/debian"

fail() { echo "ci-check: FAIL: $*" >&2; exit 1; }
ok() { echo "  ok: $*"; }
step() { printf '\n== %s\n' "$*"; }

[ "$(id -u)" = 0 ] || fail "must run as root (it installs the package, runs as $USER_NAME)"
for tool in cargo cargo-deb dpkg dpkg-deb dpkg-shlibdeps systemd-analyze setpriv prlimit ss socat \
  readelf objcopy; do
  command -v "$tool" >/dev/null || fail "$tool not found (see the top of $0)"
done

work=$(mktemp -d /tmp/edge-sbc-ci-check.XXXXXX)
chmod 0755 "$work"
declare -A started=()     # pid -> what, for everything this script started in the background
created_run_dir=""
cleanup() {
  local rc=$? pid
  for pid in "${!started[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      echo "ci-check: stopping ${started[$pid]} (pid $pid)" >&2
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  if [ "$rc" != 0 ]; then
    for log in "$work"/*.log; do
      [ -s "$log" ] || continue
      echo "--- last lines of $(basename "$log")" >&2
      tail -n 30 "$log" >&2
    done
  fi
  if [ -n "$created_run_dir" ]; then rm -rf "$RUN_DIR"; fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT

# ---------------------------------------------------------------------------------------------
step "build: cargo build --release --workspace --bins; cargo deb -p edge --no-build"
cargo build --release --workspace --bins
# The packaged edge.toml is config/examples/edge.toml with its header and the two state paths
# changed; anything else that differs means one was edited without the other.
strip_pkg_lines() {
  sed -e '1,/^$/d' "$1" | grep -vE '^(route_secret_file|store_path) = ' \
    | grep -vE '^ +# (key of the Record-Route integrity token; created|append-only location log, reloaded at start)$'
}
diff <(strip_pkg_lines config/examples/edge.toml) <(strip_pkg_lines deploy/deb/edge.toml) \
  || fail "deploy/deb/edge.toml drifted from config/examples/edge.toml" \
    "(only its header, route_secret_file and store_path may differ)"
ok "deploy/deb/edge.toml = config/examples/edge.toml but for the header and the two state paths"
rm -f "$DEB_DIR"/${PKG}_*.deb "$DEB_DIR"/${PKG}-dbgsym_*.ddeb
cargo deb -p edge --no-build --output "$DEB_DIR/"
deb=$(ls "$DEB_DIR"/${PKG}_*.deb)
[ "$(echo "$deb" | wc -l)" = 1 ] || fail "expected one package in $DEB_DIR, found: $deb"
echo "package: $deb ($(du -k "$deb" | cut -f1) KiB)"
ls -l "$DEB_DIR"/
dpkg-deb --field "$deb" Package Version Architecture Depends Installed-Size
depends=$(dpkg-deb --field "$deb" Depends)
grep -q 'libc6' <<<"$depends" || fail "Depends has no libc6 (\$auto needs dpkg-shlibdeps): $depends"
echo "conffiles:"; dpkg-deb --ctrl-tarfile "$deb" | tar -xOf - ./conffiles | sed 's/^/  /'

# ---------------------------------------------------------------------------------------------
dpkg_run() {  # dpkg ARGS...: fail on a non-zero exit and on any complaint of a maintainer script
  local out
  out=$(dpkg "$@" 2>&1) || { echo "$out"; fail "dpkg $* failed"; }
  echo "$out" | sed 's/^/  | /'
  if grep -iE 'not found|error|warning|fail|denied|cannot|unable' <<<"$out"; then
    fail "dpkg $* printed the complaints above"
  fi
}
installed() { [ "$(dpkg-query -W -f='${Status}' "$PKG" 2>/dev/null)" = "install ok installed" ]; }
check_scripts() {
  local s
  for s in postinst prerm postrm; do
    [ -f /var/lib/dpkg/info/$PKG.$s ] || fail "no $s maintainer script installed"
    sh -n /var/lib/dpkg/info/$PKG.$s || fail "$s is not valid sh"
  done
}

step "install: dpkg -i"
if ! installed && [ ! -e "$STATE_DIR" ] && [ ! -e /etc/edge-sbc ]; then
  # A machine without the package or its state (CI): install, purge, and see what stays.
  dpkg_run -i "$deb"
  installed || fail "$PKG not installed after dpkg -i"
  check_scripts
  [ -d "$STATE_DIR" ] || fail "$STATE_DIR missing after install"
  dpkg_run --purge "$PKG"
  for p in /usr/bin/edge /usr/bin/rtprelay $UNIT_DIR/edge.service $UNIT_DIR/rtprelay.service \
    /etc/edge-sbc "$STATE_DIR" /usr/share/doc/$PKG; do
    [ ! -e "$p" ] || fail "$p still there after dpkg --purge"
  done
  getent passwd "$USER_NAME" >/dev/null || fail "purge removed user $USER_NAME (system users stay)"
  ok "dpkg --purge removed the files, conffiles and $STATE_DIR, kept user $USER_NAME"
else
  echo "  (package or its state already on this machine: no purge test)"
fi
dpkg_run -i "$deb"
# Once more: the upgrade path (postinst configure <installed version>), what every upgrade runs.
dpkg_run -i "$deb"
installed || fail "$PKG not installed after dpkg -i"
check_scripts
ok "$PKG $(dpkg-query -W -f='${Version}' "$PKG"): installed, reinstalled over itself"

# ---------------------------------------------------------------------------------------------
step "installed files (owner, mode, content)"
check_path() {  # PATH TYPE(f|d) OWNER:GROUP MODE
  local path=$1 type=$2 owner=$3 mode=$4 got
  [ "$type" = d ] && { [ -d "$path" ] || fail "$path: not a directory"; }
  [ "$type" = f ] && { [ -f "$path" ] || fail "$path: missing"; }
  got=$(stat -c '%U:%G %a' "$path")
  [ "$got" = "$owner $mode" ] || fail "$path: $got, expected $owner $mode"
  ok "$path $got"
}
check_path /usr/bin/edge f root:root 755
check_path /usr/bin/rtprelay f root:root 755
check_path /usr/bin/edgectl f root:root 755
check_path /usr/bin/rtprelayctl f root:root 755
check_path $UNIT_DIR/edge.service f root:root 644
check_path $UNIT_DIR/rtprelay.service f root:root 644
check_path /usr/lib/sysusers.d/edge-sbc.conf f root:root 644
check_path /usr/lib/tmpfiles.d/edge-sbc.conf f root:root 644
check_path /usr/lib/sysctl.d/90-edge-sbc.conf f root:root 644
check_path /etc/edge-sbc d root:root 755
check_path /etc/edge-sbc/edge.toml f root:root 644
check_path /etc/edge-sbc/rtprelay.toml f root:root 644
for doc in README.md deploy.md rtprelay.md security.md media-spirals.md reliability.md performance.md copyright \
  examples/edge.toml examples/rtprelay.toml prometheus/scrape.yml prometheus/alerts.yml; do
  check_path /usr/share/doc/$PKG/$doc f root:root 644
done
same() { cmp -s "$1" "$2" || fail "$1 differs from $2"; ok "$1 = $2"; }
same $UNIT_DIR/edge.service deploy/systemd/edge.service
same $UNIT_DIR/rtprelay.service deploy/systemd/rtprelay.service
same /etc/edge-sbc/edge.toml deploy/deb/edge.toml
same /etc/edge-sbc/rtprelay.toml config/examples/rtprelay.toml
same /usr/lib/sysctl.d/90-edge-sbc.conf deploy/sysctl/90-edge-sbc.conf
conffiles=$(dpkg-query -W -f='${Conffiles}\n' "$PKG")
for f in /etc/edge-sbc/edge.toml /etc/edge-sbc/rtprelay.toml; do
  grep -q "^ $f " <<<"$conffiles" || fail "$f is not a conffile of $PKG"
  ok "$f is a conffile"
done
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
for bin in edge rtprelay; do
  v=$(/usr/bin/$bin --version)
  [ "$v" = "$bin $version" ] || fail "/usr/bin/$bin --version says '$v', expected '$bin $version'"
  ok "/usr/bin/$bin --version: $v"
  debug_sections=$(readelf -S /usr/bin/$bin | grep -cE '\.debug_(info|line)' || true)
  [ "$debug_sections" = 0 ] || fail "/usr/bin/$bin carries debug info (belongs in -dbgsym)"
done
dbgsym=$(ls "$DEB_DIR"/${PKG}-dbgsym_*.ddeb) || fail "no -dbgsym package"
ok "binaries stripped (debug info in $(basename "$dbgsym"))"

# ---------------------------------------------------------------------------------------------
step "user and state directory"
pw=$(getent passwd "$USER_NAME") || fail "user $USER_NAME missing"
IFS=: read -r _ _ uid gid _ home shell <<<"$pw"
[ "$uid" -lt 1000 ] || fail "$USER_NAME uid $uid is not a system uid"
[ "$home" = "$STATE_DIR" ] || fail "$USER_NAME home is $home, expected $STATE_DIR"
case "$shell" in */nologin|*/false) ;; *) fail "$USER_NAME has login shell $shell" ;; esac
[ "$(getent group "$USER_NAME" | cut -d: -f3)" = "$gid" ] \
  || fail "group $USER_NAME missing or not the user's primary group"
ok "user $USER_NAME: uid $uid gid $gid home $home shell $shell"
check_path "$STATE_DIR" d "$USER_NAME:$USER_NAME" 750

# ---------------------------------------------------------------------------------------------
# How the units run the daemons: User=/Group= (setpriv, supplementary groups from the user),
# NoNewPrivileges=, CapabilityBoundingSet=/AmbientCapabilities=, LimitNOFILE=/LimitMEMLOCK=,
# UMask=0077, a clean environment with systemd's HOME/USER/LOGNAME/SHELL for the user,
# WorkingDirectory=, NOTIFY_SOCKET and WATCHDOG_USEC (WatchdogSec=10).
unit_limits=(--nofile=262144:262144 --memlock=unlimited:unlimited)   # LimitNOFILE=, LimitMEMLOCK=
if ! prlimit "${unit_limits[@]}" true 2>/dev/null; then
  # Raising hard limits needs CAP_SYS_RESOURCE, which root lacks in some sandboxes: run with the
  # hard limits there (say so), the closest this machine allows.
  hard() { prlimit --pid $$ --output HARD --noheadings --raw "--$1"; }
  unit_limits=(--nofile="$(hard nofile):$(hard nofile)" --memlock="$(hard memlock):$(hard memlock)")
  echo "  notice: root cannot raise hard limits here (no CAP_SYS_RESOURCE): the daemons run with" \
    "${unit_limits[*]} instead of the units' LimitNOFILE=262144 LimitMEMLOCK=infinity"
fi
as_unit() {  # CAPS COMMAND...: CAPS -all or -all,+cap; exec's: the caller's PID is the daemon's
  local caps=$1; shift
  local env=(env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
    HOME="$STATE_DIR" USER="$USER_NAME" LOGNAME="$USER_NAME" SHELL="$shell")
  [ -n "${NOTIFY:-}" ] && env+=(NOTIFY_SOCKET="$NOTIFY" WATCHDOG_USEC=10000000)
  umask 0077
  exec prlimit "${unit_limits[@]}" -- \
    setpriv --reuid="$USER_NAME" --regid="$USER_NAME" --init-groups --no-new-privs \
    --inh-caps="$caps" --ambient-caps="$caps" --bounding-set="$caps" -- "${env[@]}" "$@"
}

step "--check-config as $USER_NAME"
for bin in edge rtprelay; do
  (cd / && NOTIFY='' as_unit -all /usr/bin/$bin --check-config --config /etc/edge-sbc/$bin.toml) \
    >"$work/$bin.effective.toml" 2>"$work/$bin.check.log" \
    || fail "$bin --check-config --config /etc/edge-sbc/$bin.toml as $USER_NAME exited $?"
  ok "$bin --check-config --config /etc/edge-sbc/$bin.toml: exit 0" \
    "($(wc -l <"$work/$bin.effective.toml") lines of effective config)"
done
toml_get() {  # FILE SECTION KEY: first value of KEY in [SECTION] (arrays: first element)
  awk -v sec="[$2]" -v key="$3" '
    /^\[/ { cur = $0; next }
    cur == sec && $1 == key {
      sub(/^[^=]*= */, ""); gsub(/[][" ]/, ""); sub(/,.*/, ""); print; exit
    }' "$1"
}
edge_store=$(toml_get "$work/edge.effective.toml" registrar store_path)
edge_secret=$(toml_get "$work/edge.effective.toml" proxy route_secret_file)
[ "$edge_store" = "$STATE_DIR/registrar/location.log" ] \
  || fail "shipped edge.toml: registrar.store_path is '$edge_store'"
[ "$edge_secret" = "$STATE_DIR/route.secret" ] \
  || fail "shipped edge.toml: proxy.route_secret_file is '$edge_secret'"
ok "edge state paths: $edge_store, $edge_secret"
sip_udp=$(toml_get "$work/edge.effective.toml" sip listen_udp)
sip_tcp=$(toml_get "$work/edge.effective.toml" sip listen_tcp)
edge_admin=$(toml_get "$work/edge.effective.toml" admin listen)
relay_ctl=$(toml_get "$work/rtprelay.effective.toml" control udp)
relay_admin=$(toml_get "$work/rtprelay.effective.toml" admin listen)
echo "  addresses: edge SIP udp $sip_udp tcp $sip_tcp admin $edge_admin;" \
  "rtprelay control $relay_ctl admin $relay_admin"
for a in "$sip_udp" "$sip_tcp" "$edge_admin" "$relay_ctl" "$relay_admin"; do
  [[ "$a" =~ ^[0-9.]+:[0-9]+$ ]] || fail "address '$a' in the effective configs: not IPv4 ip:port"
  in_use=$(ss -Hlnut "( sport = :${a##*:} )")
  [ -z "$in_use" ] || fail "port ${a##*:} is in use on this machine (stop what listens there):
$in_use"
done
ok "ports free"

# ---------------------------------------------------------------------------------------------
start_notify_listener() {  # NAME: abstract-namespace datagram socket like systemd's notify socket
  local name=edge-sbc-ci-check-$$-$1
  socat -u "ABSTRACT-RECV:$name" "OPEN:$work/$1.notify,creat,append" 2>"$work/$1.notify.log" &
  started[$!]="notify listener for $1"
  NOTIFY="@$name"
  # The daemon sends READY=1 once: the socket must exist before it starts (systemd's does).
  wait_for 10 "notify socket $NOTIFY" grep -q "@$name\$" /proc/net/unix
}
wait_for() {  # SECONDS WHAT COMMAND...: retry COMMAND every 0.2 s until it succeeds
  local secs=$1 what=$2; shift 2
  for _ in $(seq $((secs * 5))); do "$@" && return 0; sleep 0.2; done
  fail "$what: nothing after ${secs} s"
}
alive() { kill -0 "$1" 2>/dev/null || fail "$2 exited early (see its log below)"; }
notified() { grep -q "$2" "$work/$1.notify" 2>/dev/null; }
status_of() {  # NAME: the STATUS= that came with READY=1 (datagrams arrive without separators)
  local s
  s=$(<"$work/$1.notify")
  s=${s#*READY=1$'\n'STATUS=}
  s=${s%%WATCHDOG=1*}
  s=${s%%STOPPING=1*}
  s=${s%%STATUS=*}
  echo "${s%%$'\n'*}"
}
stop_daemon() {  # PID NAME (bash reaps its children: kill -0 fails once the daemon exited)
  local pid=$1 name=$2 rc=0
  kill -TERM "$pid"
  for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  ! kill -0 "$pid" 2>/dev/null || fail "$name still running 15 s after SIGTERM"
  wait "$pid" || rc=$?
  unset "started[$pid]"
  [ "$rc" = 0 ] || fail "$name exited $rc after SIGTERM, expected 0"
  ok "$name: SIGTERM -> exit 0"
}
# Send stdin to ip:port, print the answer (nothing after 2 s idle).
udp_ask() { timeout 5 socat -T 2 - "UDP:$1" 2>/dev/null || true; }
tcp_ask() { timeout 5 socat -T 2 - "TCP:$1" 2>/dev/null || true; }
http_get() { printf 'GET %s HTTP/1.0\r\n\r\n' "$2" | tcp_ask "$1" | head -n1 | tr -d '\r'; }

step "rtprelay as $USER_NAME in $RUN_DIR (like rtprelay.service)"
if [ ! -d "$RUN_DIR" ]; then created_run_dir=1; fi
install -d -o "$USER_NAME" -g "$USER_NAME" -m 0755 "$RUN_DIR"    # RuntimeDirectory=, mode 0755
start_notify_listener rtprelay
(cd "$RUN_DIR" && as_unit -all /usr/bin/rtprelay --config /etc/edge-sbc/rtprelay.toml) \
  >"$work/rtprelay.log" 2>&1 &
relay_pid=$!
started[$relay_pid]=rtprelay
relay_ready() { alive "$relay_pid" rtprelay; notified rtprelay READY=1; }
wait_for 20 "rtprelay READY=1" relay_ready
ok "rtprelay (pid $relay_pid) sent READY=1, STATUS=$(status_of rtprelay)"
runs_as_unit() {  # PID BINARY DIR
  [ "$(readlink "/proc/$1/exe")" = "$2" ] || fail "pid $1 is not $2"
  [ "$(stat -c %U "/proc/$1")" = "$USER_NAME" ] || fail "$2 does not run as $USER_NAME"
  [ "$(readlink "/proc/$1/cwd")" = "$3" ] || fail "$2's working directory is not $3"
}
runs_as_unit "$relay_pid" /usr/bin/rtprelay "$RUN_DIR"
grep -q '^CapAmb:\s*0000000000000000$' "/proc/$relay_pid/status" || fail "rtprelay has capabilities"
ok "rtprelay runs /usr/bin/rtprelay as $USER_NAME in $RUN_DIR without capabilities"
reply=""
relay_answers() {
  alive "$relay_pid" rtprelay
  reply=$(printf 'cicheck_1 V\n' | udp_ask "$relay_ctl")
  [ "$reply" = "cicheck_1 20040107" ]
}
wait_for 10 "rtprelay control $relay_ctl: 'V' answered 20040107" relay_answers
ok "rtprelay control $relay_ctl: 'cicheck_1 V' -> '$reply'"
reply=$(http_get "$relay_admin" /health)
[[ "$reply" == "HTTP/1."?" 200"* ]] || fail "rtprelay admin $relay_admin GET /health: '$reply'"
ok "rtprelay admin $relay_admin GET /health -> $reply"
wait_for 10 "rtprelay WATCHDOG=1" notified rtprelay WATCHDOG=1
ok "rtprelay sends WATCHDOG=1"

step "edge as $USER_NAME in $STATE_DIR (like edge.service)"
start_notify_listener edge
(cd "$STATE_DIR" && as_unit -all,+net_bind_service /usr/bin/edge --config /etc/edge-sbc/edge.toml) \
  >"$work/edge.log" 2>&1 &
edge_pid=$!
started[$edge_pid]=edge
edge_ready() { alive "$edge_pid" edge; notified edge READY=1; }
wait_for 20 "edge READY=1" edge_ready
ok "edge (pid $edge_pid) sent READY=1, STATUS=$(status_of edge)"
runs_as_unit "$edge_pid" /usr/bin/edge "$STATE_DIR"
grep -q '^CapAmb:\s*0000000000000400$' "/proc/$edge_pid/status" \
  || fail "edge's ambient capabilities are not CAP_NET_BIND_SERVICE alone"
ok "edge runs /usr/bin/edge as $USER_NAME in $STATE_DIR with CAP_NET_BIND_SERVICE only"
reply=$(http_get "$edge_admin" /health)
[[ "$reply" == "HTTP/1."?" 200"* ]] || fail "edge admin $edge_admin GET /health: '$reply'"
ok "edge admin $edge_admin GET /health -> $reply"
options() {  # TRANSPORT HOST:PORT: an OPTIONS to the edge itself (answered 200 by the edge)
  printf '%s\r\n' "OPTIONS sip:$2 SIP/2.0" \
    "Via: SIP/2.0/$1 127.0.0.1:9;branch=z9hG4bK-cicheck-$$-$1;rport" \
    "Max-Forwards: 70" "From: <sip:ci-check@127.0.0.1>;tag=cicheck" "To: <sip:$2>" \
    "Call-ID: ci-check-$$-$1@127.0.0.1" "CSeq: 1 OPTIONS" "Content-Length: 0" ""
}
reply=$(options UDP "$sip_udp" | udp_ask "$sip_udp" | head -n1 | tr -d '\r')
[ "$reply" = "SIP/2.0 200 OK" ] || fail "OPTIONS over UDP to $sip_udp: '$reply'"
ok "OPTIONS sip:$sip_udp over UDP -> $reply"
reply=$(options TCP "$sip_tcp" | tcp_ask "$sip_tcp" | head -n1 | tr -d '\r')
[ "$reply" = "SIP/2.0 200 OK" ] || fail "OPTIONS over TCP to $sip_tcp: '$reply'"
ok "OPTIONS sip:$sip_tcp over TCP -> $reply"
check_path "$edge_store" f "$USER_NAME:$USER_NAME" 600
check_path "$edge_secret" f "$USER_NAME:$USER_NAME" 600
[ "$(stat -c %s "$edge_secret")" = 32 ] || fail "$edge_secret is not 32 bytes"
check_path "$(dirname "$edge_store")" d "$USER_NAME:$USER_NAME" 700
wait_for 10 "edge WATCHDOG=1" notified edge WATCHDOG=1
ok "edge sends WATCHDOG=1"
reply=$(/usr/bin/edgectl --admin "$edge_admin" status) || fail "edgectl status: $reply"
grep -q '^draining *false$' <<<"$reply" || fail "edgectl status: '$reply'"
ok "edgectl --admin $edge_admin status answers ($(tr '\n' ' ' <<<"$reply"))"

step "stop (SIGTERM, like systemctl stop)"
stop_daemon "$edge_pid" edge
stop_daemon "$relay_pid" rtprelay
for d in edge rtprelay; do
  notified $d STOPPING=1 || fail "$d sent no STOPPING=1"
done
ok "both sent STOPPING=1"
for pid in "${!started[@]}"; do    # the notify listeners
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  unset "started[$pid]"
done
# RuntimeDirectory= goes when the unit stops.
if [ -n "$created_run_dir" ]; then rm -rf "$RUN_DIR"; created_run_dir=""; fi

# ---------------------------------------------------------------------------------------------
step "systemd-analyze verify"
verify_out=$(systemd-analyze verify $UNIT_DIR/rtprelay.service $UNIT_DIR/edge.service 2>&1) \
  || { echo "$verify_out"; fail "systemd-analyze verify failed"; }
if grep -E 'edge\.service|rtprelay\.service|edge-sbc' <<<"$verify_out"; then
  fail "systemd-analyze verify complained about our units"
fi
if [ -z "$verify_out" ]; then
  ok "no output, exit 0"
else
  echo "$verify_out" | sed 's/^/  (other units) /'
  ok "exit 0, nothing about our units"
fi

step "systemd-analyze security --offline=true (fail above $SECURITY_MAX)"
for unit in edge rtprelay; do
  sec=$(systemd-analyze security --offline=true --no-pager $UNIT_DIR/$unit.service 2>&1) \
    || { echo "$sec"; fail "systemd-analyze security $unit.service failed"; }
  line=$(grep 'Overall exposure level' <<<"$sec") \
    || { echo "$sec"; fail "no exposure level for $unit.service"; }
  score=$(grep -oE '[0-9]+\.[0-9]+' <<<"$line" | head -n1)
  echo "  $line"
  awk -v s="$score" -v m="$SECURITY_MAX" 'BEGIN { exit !(s <= m) }' \
    || fail "$unit.service exposure $score is above $SECURITY_MAX"
done

printf '\nci-check: edge-sbc package OK (%s, %s s)\n' "$(basename "$deb")" "$SECONDS"
