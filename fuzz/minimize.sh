#!/usr/bin/env bash
# Minimizes the committed corpus: for each target (or the ones named), the
# seeds (corpus/T/seed-*, written by make_seeds.py) plus the fewest other
# files that reach every edge the corpus reaches, chosen by libFuzzer's
# greedy set cover (-set_cover_merge), which keeps about a third fewer files
# than the plain merge. Edges only, without hit counters or comparison
# features: `cargo fuzz cmin` counts those too and keeps almost everything.
# Run from anywhere; needs cargo-fuzz.
set -euo pipefail
cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP=1
cargo fuzz build -O -a
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo fuzz list)
for target in "${targets[@]}"; do
  kept=$(mktemp -d)
  cp corpus/"$target"/seed-* "$kept"/ 2>/dev/null || true
  target/x86_64-unknown-linux-gnu/release/"$target" -set_cover_merge=1 -use_counters=0 \
    -use_value_profile=0 -use_cmp=0 "$kept" corpus/"$target" 2>"$kept.log" || {
    cat "$kept.log" >&2
    exit 1
  }
  # The merge may write a seed again under its SHA-1 name.
  for seed in "$kept"/seed-*; do
    [ -e "$seed" ] && rm -f "$kept/$(sha1sum "$seed" | cut -d' ' -f1)"
  done
  before=$(find corpus/"$target" -type f | wc -l)
  rm -rf corpus/"$target"
  mv "$kept" corpus/"$target"
  rm -f "$kept.log"
  echo "$target: $before -> $(find corpus/"$target" -type f | wc -l) files"
done
