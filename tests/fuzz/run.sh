#!/bin/sh
# Run one fuzz target for a fixed number of executions (default 10 million), one process, no
# sanitizer (see README), with its dictionary; the log goes to tests/fuzz/logs/<target>.log.
#   tests/fuzz/run.sh <target> [runs] [extra libFuzzer flags...]
set -eu
cd "$(dirname "$0")/../.."
t=$1
runs=${2:-10000000}
[ $# -ge 2 ] && shift 2 || shift 1
case $t in
  sip_message|stream_framing) dict=tests/fuzz/dict/sip.dict ;;
  sdp) dict=tests/fuzz/dict/sdp.dict ;;
  control_command) dict=tests/fuzz/dict/control.dict ;;
  *) dict= ;;
esac
mkdir -p tests/fuzz/logs
cargo +nightly fuzz run -s none --fuzz-dir tests/fuzz "$t" -- \
  -runs="$runs" -max_len=8192 -rss_limit_mb=2048 -timeout=10 \
  ${dict:+-dict=$dict} -print_final_stats=1 "$@" \
  > "tests/fuzz/logs/$t.log" 2>&1
