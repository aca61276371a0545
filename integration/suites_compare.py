#!/usr/bin/env python3
"""Compares per-test outcomes of the client suites: directly vs through causeway.

Owns the verdict of integration/suites.sh. Reads the per-test results that
suites_plugin.py wrote (`<suite>-<target>.json`, target = direct |
transaction | session), prints passed/failed/errors/skipped per suite and target, and fails
when a test that passes directly does not pass through causeway in a pool mode,
unless integration/suites-exclusions.txt names it (only for cross-connection
freshness, issue 24). For each regression kind it prints the first error
message and an example test, so the cause can be read from the CI log.
"""

import argparse
import json
import os
import re
import sys

MODES = ["transaction", "session", "transaction-fresh", "session-fresh"]


def outcomes(path, keep=None):
    """{test id: (outcome, first line of the message)} from suites_plugin's JSON."""
    with open(path) as f:
        raw = json.load(f)
    return {
        tid: (r["outcome"], r["msg"])
        for tid, r in raw.items()
        if keep is None or tid in keep
    }


def counts(res):
    c = {"passed": 0, "failed": 0, "error": 0, "skipped": 0}
    for outcome, _ in res.values():
        c[outcome] += 1
    return c


def load_exclusions(path):
    """{(suite, mode, test id): reason}; a line is `suite | mode | test id | reason`."""
    ex = {}
    if not os.path.exists(path):
        return ex
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = [p.strip() for p in line.split("|")]
            if len(parts) != 4 or not parts[3]:
                sys.exit(f"{path}:{n}: want `suite | mode | test id | reason`")
            suite, mode, tid, reason = parts
            if mode not in MODES + ["*"]:
                sys.exit(f"{path}:{n}: mode must be one of {', '.join(MODES)} or *")
            ex[(suite, mode, tid)] = reason
    return ex


def kind(msg):
    """A message with numbers and quoted names blanked, to group regressions."""
    k = re.sub(r"'[^']*'", "'…'", msg)
    k = re.sub(r"\d+", "N", k)
    return k[:160]


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--work", required=True, help="where suites.py wrote its results")
    ap.add_argument("--suites", default="pymysql,sqlalchemy")
    ap.add_argument("--modes", default="transaction,session", help="the proxy targets to check")
    ap.add_argument("--exclusions", default=os.path.join(os.path.dirname(__file__), "suites-exclusions.txt"))
    ap.add_argument("--show", type=int, default=3, help="example tests per regression kind")
    args = ap.parse_args()
    excl = load_exclusions(args.exclusions)
    used = set()
    print(f"{'suite':<11} {'target':<12} {'passed':>7} {'failed':>7} {'errors':>7} {'skipped':>8}")
    regressions, checked = 0, 0
    report = []
    for suite in args.suites.split(","):
        res = {}
        with open(os.path.join(args.work, f"{suite}-touched.txt")) as f:
            touched = {line.rstrip("\n") for line in f}
        modes = args.modes.split(",")
        for target in ["direct", *modes]:
            path = os.path.join(args.work, f"{suite}-{target}.json")
            if not os.path.exists(path):
                sys.exit(f"suites: missing {path}")
            # the direct run also ran tests that send nothing to the server;
            # count, like the proxies, only those that do
            res[target] = outcomes(path, touched)
            c = counts(res[target])
            print(f"{suite:<11} {target:<12} {c['passed']:>7} {c['failed']:>7} {c['error']:>7} {c['skipped']:>8}")
        passing = [t for t, (o, _) in res["direct"].items() if o == "passed"]
        for mode in modes:
            kinds = {}
            for tid in passing:
                outcome, msg = res[mode].get(tid, ("missing", "test did not run"))
                checked += 1
                if outcome == "passed":
                    continue
                key = next(((suite, m, tid) for m in (mode, "*") if (suite, m, tid) in excl), None)
                if key:
                    used.add(key)
                    continue
                regressions += 1
                kinds.setdefault(kind(f"{outcome}: {msg}"), []).append((tid, outcome, msg))
            for k, tests in sorted(kinds.items(), key=lambda kv: -len(kv[1])):
                report.append(f"  [{suite} / {mode}] {len(tests)} x {tests[0][1]}: {tests[0][2][:300]}")
                for tid, _, _ in tests[: args.show]:
                    report.append(f"      e.g. {tid}")
    if report:
        print("\nTests that pass directly but not through causeway (grouped by first error):")
        print("\n".join(report))
    stale = [k for k in excl if k not in used]
    if stale:
        print(f"\nnote: {len(stale)} exclusion(s) not needed in this run:")
        for suite, mode, tid in stale:
            print(f"  {suite} | {mode} | {tid}")
    print(f"\n{len(used)} excluded test outcome(s) (suites-exclusions.txt)")
    print(f"suites: {checked - regressions - len(used)} passed, {regressions} failed")
    return 1 if regressions else 0


if __name__ == "__main__":
    sys.exit(main())
