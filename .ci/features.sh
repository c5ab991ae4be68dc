#!/usr/bin/env bash
# Every library crate builds with no features, with each feature alone and
# with all of them (what `cargo hack check --each-feature` does), so no
# feature leans on another one it does not turn on. Warnings fail the run.
set -euo pipefail
cd "$(dirname "$0")/.."

# name and features of each published crate of the workspace, one per line.
crates=$(cargo metadata --format-version 1 --no-deps --locked | python3 -c '
import json, sys
for package in json.load(sys.stdin)["packages"]:
    if package.get("publish") == []:
        continue
    features = [f for f in package["features"] if f != "default"]
    print(package["name"], " ".join(sorted(features)))
')

# clippy, not check: its -D warnings reaches only our crates, and it
# shares the clippy step's build of the dependencies.
check() {
  cargo clippy --locked --quiet -p "$@" -- -D warnings
}
checked=0
while read -r crate features; do
  check "$crate" --no-default-features
  check "$crate" --all-features
  checked=$((checked + 2))
  for feature in $features; do
    check "$crate" --no-default-features --features "$feature"
    checked=$((checked + 1))
  done
done <<< "$crates"
echo "$checked feature sets checked"
