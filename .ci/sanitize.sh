#!/usr/bin/env bash
# AddressSanitizer over the tests that reach the project's `unsafe` code:
# ws-core's unmasking (AVX2 and the portable path, the copy into spare
# capacity) and its UTF-8 view, and ws-smol's reads into uninitialised
# spare capacity. Miri cannot be installed on these machines; ASan on the
# stable toolchain needs RUSTC_BOOTSTRAP=1 and an explicit --target (so that
# build scripts and proc macros stay uninstrumented). Own target directory:
# the instrumented build must not mix with the normal one.
# Usage: .ci/sanitize.sh
set -euo pipefail
cd "$(dirname "$0")/.."
target=$(rustc -vV | sed -n 's/^host: //p')
export RUSTC_BOOTSTRAP=1
export RUSTFLAGS="-Zsanitizer=address"
export RUSTDOCFLAGS="-Zsanitizer=address"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1"
export CARGO_TARGET_DIR=target/asan
cargo test --locked --quiet --target "$target" -p ws-core --lib --tests
cargo test --locked --quiet --target "$target" -p ws-smol --test on_smol
