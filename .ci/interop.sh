#!/usr/bin/env bash
# Interop with Python `websockets` and Node `ws`, both directions, plain and
# with permessage-deflate, and headless Chromium (Debian's package, installed
# here if missing) exchanging compressed messages with our server; and an
# MLS group shared by ws-crypto's member (mls-rs) and a ts-mls member.
# Usage: .ci/interop.sh [ws-tokio|ws-smol]
set -euo pipefail
cd "$(dirname "$0")/.."
adapter=${1:-ws-tokio}
venv=target/ci/interop-venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet -r interop/python/requirements.txt
(cd interop/node && npm ci --no-audit --no-fund --loglevel=error)
suffix=""
[ "$adapter" = ws-smol ] && suffix=_smol
cargo build --locked --release --quiet -p ws-interop --bin "interop$suffix"
bin=target/release/interop$suffix
echo "--- $adapter <-> python websockets"
"$venv/bin/python" interop/python/interop_test.py "$bin"
echo "--- $adapter <-> node ws"
node interop/node/interop.mjs "$bin"
if ! command -v chromium >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
echo "--- $adapter <-> headless chromium"
node interop/node/browser.mjs "$bin"
# MLS does not depend on the adapter: once, with the tokio run.
if [ "$adapter" = ws-tokio ]; then
  echo "--- MLS: ws-crypto (mls-rs) <-> ts-mls, one group, ciphersuite 1"
  cargo build --locked --release --quiet -p ws-interop --bin mls_peer
  node interop/node/mls.mjs target/release/mls_peer
fi
