#!/usr/bin/env python3
"""Prints ws-core next to its peers from criterion's saved results.

Usage: python3 benches/report.py [GROUP...]   (after `cargo bench -p ws-benches`)
Benchmark ids are `<group>/<crate>/<case>/<size>`; throughput is in bytes.
"""
import collections, json, pathlib, sys

root = pathlib.Path(__file__).resolve().parent.parent / "target" / "criterion"
SIZE_ORDER = {"16B": 0, "1KiB": 1, "64KiB": 2, "1MiB": 3}

def human(bps):
    for unit, div in (("GiB/s", 1 << 30), ("MiB/s", 1 << 20)):
        if bps >= div:
            return f"{bps / div:.2f} {unit}"
    return f"{bps:.0f} B/s"

results = collections.defaultdict(dict)  # (group, case, size) -> crate -> bytes/s
for meta in root.glob("*/*/*/new/benchmark.json"):
    bench = json.loads(meta.read_text())
    estimates = json.loads((meta.parent / "estimates.json").read_text())
    crate, _, case = bench["function_id"].partition("/")
    amount = bench["throughput"]["Bytes"]
    results[(bench["group_id"], case, bench["value_str"])][crate] = amount / estimates["mean"]["point_estimate"] * 1e9

groups = sys.argv[1:] or sorted({g for g, _, _ in results})
for group in groups:
    keys = sorted((k for k in results if k[0] == group), key=lambda k: (k[1], SIZE_ORDER.get(k[2], 9)))
    peers = sorted({c for k in keys for c in results[k] if c != "ws-core"})
    print(f"\n{group}\n")
    print("| case | size | ws-core | " + " | ".join(peers) + " | " + " | ".join(f"ws-core / {p}" for p in peers) + " |")
    print("|---" * (3 + 2 * len(peers)) + "|")
    for key in keys:
        row = results[key]
        ours = row.get("ws-core")
        cells = [human(row[p]) if p in row else "-" for p in peers]
        ratios = [f"{ours / row[p]:.2f}x" if ours and p in row else "-" for p in peers]
        print(f"| {key[1]} | {key[2]} | {human(ours) if ours else '-'} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
