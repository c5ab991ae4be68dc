"""Fails unless every Autobahn case of AGENT is OK or INFORMATIONAL.

Usage: python3 autobahn_check.py AGENT index.json [index.json ...]
NON-STRICT, FAILED, UNCLEAN and a missing report all count as failures,
and so does a case that one report has and another lacks (both modes run
the same cases, so a gap means a case went unrecorded).
"""
import collections
import json
import sys

agent, reports = sys.argv[1], sys.argv[2:]
PASS = {"OK", "INFORMATIONAL"}
bad = 0
for path in reports:
    cases = json.load(open(path)).get(agent)
    if not cases:
        print(f"{path}: no results for agent {agent}")
        bad += 1
        continue
    tally = collections.Counter((c["behavior"], c["behaviorClose"]) for c in cases.values())
    print(f"{path}: {len(cases)} cases {dict(tally)}")
    for case, result in sorted(cases.items(), key=lambda kv: [int(x) for x in kv[0].split(".")]):
        if result["behavior"] not in PASS or result["behaviorClose"] not in PASS:
            print(f"  {case}: {result['behavior']} / {result['behaviorClose']}")
            bad += 1
every = set()
loaded = {}
for path in reports:
    loaded[path] = set(json.load(open(path)).get(agent) or {})
    every |= loaded[path]
for path, cases in loaded.items():
    for case in sorted(every - cases):
        print(f"  {path}: case {case} has no result")
        bad += 1
sys.exit(1 if bad else 0)
