#!/usr/bin/env python3
"""One line per failing test of a run.sh log: the test's last error line, and what etcdpy said.

    tests/e2e_etcd/triage.py LOG [BASELINE_LOG]

With BASELINE_LOG (a run against real etcd), only the tests that passed there are listed.
etcdpy's side comes from $E2E_WORK/serverlogs/<run>/<test>/*.log (one file per start): a
refusal ("etcdpy: ...", exit 2) or the first JSON line at level error/fatal/panic.
"""

from __future__ import annotations

import glob
import json
import os
import re
import sys
from pathlib import Path

RESULT = re.compile(r"--- (PASS|FAIL|SKIP): (\S+)")
RUN = re.compile(r"=== RUN   (\S+)$")
GO_ERROR = re.compile(r"\s+\S+\.go:\d+:")


def lines_of(path: str) -> list[str]:
    return Path(path).read_text(errors="replace").splitlines()


def results(path: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in lines_of(path):
        m = RESULT.match(line)
        if m:
            out[m.group(2)] = m.group(1)
    return out


def test_errors(path: str) -> dict[str, str]:
    """Each test's last Go error line (or its timeout panic, or its last line)."""
    current: str | None = None
    seen: dict[str, list[str]] = {}
    out: dict[str, str] = {}
    for line in lines_of(path):
        m = RUN.match(line.rstrip())
        if m and "/" not in m.group(1):
            current = m.group(1)
            seen[current] = []
            continue
        m = RESULT.match(line)
        if m:
            lines = seen.get(m.group(2), [])
            errs = [x.strip() for x in lines if GO_ERROR.match(x)]
            if not errs:
                errs = [x.strip() for x in lines if "panic: test timed out" in x]
            out[m.group(2)] = errs[-1] if errs else (lines[-1].strip() if lines else "?")
            current = None
            continue
        if current:
            seen[current].append(line)
    return out


def server_said(run_dir: str, test: str) -> str:
    notes: list[str] = []
    for f in sorted(glob.glob(os.path.join(run_dir, test, "*.log"))):
        for line in lines_of(f)[1:]:
            if line.startswith("etcdpy:"):
                notes.append(line)
                break
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("level") in ("error", "fatal", "panic"):
                notes.append(f"{rec.get('msg')} {rec.get('error', '')}".strip())
                break
    return "; ".join(dict.fromkeys(notes))


def main(argv: list[str]) -> None:
    log = argv[1]
    base = results(argv[2]) if len(argv) > 2 else None
    res, errs = results(log), test_errors(log)
    m = re.search(r"(\w+-\d{8}-\d{6})\.log$", log)
    run_dir = ""
    if m:
        run_dir = os.path.join(os.path.dirname(os.path.dirname(log)), "serverlogs", m.group(1))
    for test, result in res.items():
        if result != "FAIL" or (base is not None and base.get(test) != "PASS"):
            continue
        srv = server_said(run_dir, test) if run_dir else ""
        print(f"{test} | {errs.get(test, '?')[:300]} | server: {srv[:200]}")


if __name__ == "__main__":
    main(sys.argv)
