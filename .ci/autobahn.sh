#!/usr/bin/env bash
# Autobahn TestSuite against one adapter, in one or both modes:
#   server: fuzzingclient -> the adapter's echo example,
#   client: fuzzingserver -> the adapter's autobahn_client example.
# Sections 1-7, 9, 10, and 12-13 (permessage-deflate) unless
# AUTOBAHN_CASES names others (a JSON list). Fails unless every case is OK
# or INFORMATIONAL.
# Usage: .ci/autobahn.sh [ws-tokio|ws-smol] [server|client|both]
set -euo pipefail
cd "$(dirname "$0")/.."
adapter=${1:-ws-tokio}
modes=${2:-both}
[ "$modes" = both ] && modes="server client"
venv=target/ci/autobahn-venv
work=target/ci/autobahn/$adapter

mkdir -p target/ci
# Two runs may start side by side (.ci/run runs both adapters at once):
# the first one to take the lock sets up the suite.
(
  flock 9
  if [ ! -x "$venv/bin/wstest" ]; then
    # The suite runs on Python 2.7 (pyenv provides it on this machine kind).
    py27="$(pyenv root)/versions/2.7.18/bin/python"
    "$py27" -m pip install --quiet virtualenv
    "$py27" -m virtualenv --quiet "$venv"
    "$venv/bin/pip" install --quiet autobahntestsuite
  fi
) 9> target/ci/autobahn-venv.lock

# The testees' (Autobahn's word for the programs it tests) names carry the runtime so the adapters' binaries never
# collide.
suffix=""
[ "$adapter" = ws-smol ] && suffix=_smol
cargo build --locked --release --quiet -p ws-interop --bin "echo$suffix" --bin "autobahn_client$suffix"
bin=target/release
mkdir -p "$work"
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() { python3 -c '
import socket, sys, time
for _ in range(200):
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.5).close(); sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit("nothing listens on port " + sys.argv[1])' "$1"; }
cases=${AUTOBAHN_CASES:-'["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "9.*", "10.*", "12.*", "13.*"]'}
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT

reports=()
for mode in $modes; do
  rm -rf "$work/reports/$mode"
  port=$(free_port)
  case $mode in
    server)
      echo "--- $adapter as server (wstest -m fuzzingclient)"
      "$bin/echo$suffix" "127.0.0.1:$port" --max-message 16777216 --max-fragments 100000 --deflate \
        > "$work/echo.log" 2>&1 &
      pids+=($!)
      wait_port "$port"
      cat > "$work/fuzzingclient.json" <<JSON
{"outdir": "$work/reports/server", "servers": [{"agent": "$adapter", "url": "ws://127.0.0.1:$port"}],
 "cases": $cases, "exclude-cases": [], "exclude-agent-cases": {}}
JSON
      "$venv/bin/wstest" -m fuzzingclient -s "$work/fuzzingclient.json" > "$work/fuzzingclient.log" 2>&1
      ;;
    client)
      echo "--- $adapter as client (wstest -m fuzzingserver)"
      cat > "$work/fuzzingserver.json" <<JSON
{"url": "ws://127.0.0.1:$port", "outdir": "$work/reports/client",
 "cases": $cases, "exclude-cases": [], "exclude-agent-cases": {}}
JSON
      # No embedded web server (its fixed port 8080 would clash with a
      # second run, or anything else on this machine).
      "$venv/bin/wstest" -m fuzzingserver --webport 0 -s "$work/fuzzingserver.json" \
        > "$work/fuzzingserver.log" 2>&1 &
      pids+=($!)
      wait_port "$port"
      "$bin/autobahn_client$suffix" "ws://127.0.0.1:$port" "$adapter"
      ;;
    *)
      echo "unknown mode $mode (server, client or both)" >&2
      exit 2
      ;;
  esac
  reports+=("$work/reports/$mode/index.json")
done

python3 .ci/autobahn_check.py "$adapter" "${reports[@]}"
