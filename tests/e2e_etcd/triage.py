#!/usr/bin/env python3
"""One line per failing test of a run.sh log: the test's last error line, and what etcdpy said.

    tests/e2e_etcd/triage.py LOG [BASELINE_LOG]

With BASELINE_LOG (a run against real etcd), only the tests that passed there are listed.
etcdpy's side comes from $E2E_WORK/serverlogs/<run>/<test>/*.log (one file per start): a
refusal ("etcdpy: ...", exit 2) or the first JSON line at level error/fatal/panic/warn.
"""
import glob
import json
import os
import re
import sys


def results(path):
    out = {}
    for line in open(path, errors="replace"):
        m = re.match(r"--- (PASS|FAIL|SKIP): (\S+)", line)
        if m:
            out[m.group(2)] = m.group(1)
    return out


def test_errors(path):
    cur, buf, out = None, {}, {}
    for line in open(path, errors="replace"):
        m = re.match(r"=== RUN   (\S+)$", line.rstrip())
        if m and "/" not in m.group(1):
            cur = m.group(1)
            buf[cur] = []
            continue
        m = re.match(r"--- (PASS|FAIL|SKIP): (\S+)", line)
        if m:
            lines = buf.get(m.group(2), [])
            errs = [l.strip() for l in lines if re.match(r"\s+\S+\.go:\d+:", l)]
            if not errs:
                errs = [l.strip() for l in lines if "panic: test timed out" in l]
            out[m.group(2)] = errs[-1] if errs else (lines[-1].strip() if lines else "?")
            cur = None
            continue
        if cur:
            buf[cur].append(line)
    return out


def server_said(run_dir, test):
    notes = []
    for f in sorted(glob.glob(os.path.join(run_dir, test, "*.log"))):
        lines = open(f, errors="replace").read().splitlines()
        for line in lines[1:]:
            if line.startswith("etcdpy:"):
                notes.append(line)
                break
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("level") in ("error", "fatal", "panic"):
                notes.append(f'{rec.get("msg")} {rec.get("error", "")}'.strip())
                break
    return "; ".join(dict.fromkeys(notes))


def main():
    log = sys.argv[1]
    base = results(sys.argv[2]) if len(sys.argv) > 2 else None
    res, errs = results(log), test_errors(log)
    m = re.search(r"(\w+-\d{8}-\d{6})\.log$", log)
    run_dir = os.path.join(os.path.dirname(os.path.dirname(log)), "serverlogs", m.group(1)) if m else ""
    for test, r in res.items():
        if r != "FAIL" or (base is not None and base.get(test) != "PASS"):
            continue
        srv = server_said(run_dir, test) if run_dir else ""
        print(f"{test} | {errs.get(test, '?')[:300]} | server: {srv[:200]}")


main()
