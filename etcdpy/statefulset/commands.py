"""``etcdpy k8s <verb>``: the command line of the StatefulSet commands (flags and environment,
settings.py), dispatch and exit codes: 0 fine, 1 the command failed (the message says why),
2 bad command line or settings. The object verbs (OBJECT_VERBS: apply, get, ...) share the
``etcdpy k8s`` name: etcdpy.cli.server_main sends them to etcdpy.k8s.ctl, and this help lists
them beside the StatefulSet's.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from etcdpy.observability.logging import configure_logging, get_logger
from etcdpy.statefulset.bootstrap import RunMember
from etcdpy.statefulset.client import ClientError
from etcdpy.statefulset.retry import GaveUp
from etcdpy.statefulset.settings import Settings, SettingsError, add_flags, from_sources

EXIT_FAILED = 1
EXIT_USAGE = 2

VERBS: dict[str, str] = {
    "bootstrap": "the member container: join, rejoin or bootstrap, then run the member",
    "scale-in": "the pre-upgrade hook: remove the members whose ordinal >= replicas",
    "snapshot": "the snapshot CronJob: save db-<UTC time> atomically, keep the newest N",
    "defrag": "the defrag CronJob: defragment every member, followers first, leader last",
    "check": "the helm test: write, read back and delete a key; members agree",
}


# The kubectl-like verbs over Kubernetes objects (etcdpy.k8s.ctl.VERBS has the same summaries;
# tests/k8s/test_ctl.py keeps the two in step).
OBJECT_VERBS: dict[str, str] = {
    "apply": "create or update objects from manifests (-f FILE, - for stdin)",
    "get": "print objects as kubectl's tables, or -o json|yaml|wide|name",
    "delete": "delete objects by kind and name, or those of -f FILE",
    "watch": "print a row for every change of a kind (same as get -w)",
    "reencrypt": "rewrite stored objects with the first provider of --encryption-provider-config",
    "controller": "run an example controller (replicaset, node-lifecycle)",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="etcdpy k8s",
        description="etcdpy as a Kubernetes StatefulSet (docs/kubernetes-membership.md), and "
        "Kubernetes objects in etcd (docs/k8s-cli.md: etcdpy k8s VERB --help). Every "
        "StatefulSet setting is an ETCDPY_K8S_* variable and a flag named like it.",
    )
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for verb, summary in VERBS.items():
        add_flags(sub.add_parser(verb, help=summary, description=summary))
    for verb, summary in OBJECT_VERBS.items():  # run by etcdpy.k8s.ctl; listed here for --help
        sub.add_parser(verb, help=summary, add_help=False)
    return parser


def _run_verb(verb: str, settings: Settings, environ: Mapping[str, str],
              run_member: RunMember, log: Any) -> int:  # fmt: skip
    if verb == "bootstrap":
        from etcdpy.statefulset.bootstrap import bootstrap

        return bootstrap(settings, environ, run_member, log)
    from etcdpy.statefulset.jobs import JOBS

    return JOBS[verb](settings, log)


def main(argv: Sequence[str], run_member: RunMember,
         environ: Mapping[str, str] | None = None) -> int:  # fmt: skip
    env = os.environ if environ is None else environ
    try:
        args = _parser().parse_args(list(argv))
    except SystemExit as exit_:  # --help (0) or a bad command line (2)
        return int(exit_.code or 0)
    settings = from_sources(args, env)
    configure_logging(env.get("ETCD_LOG_LEVEL", "info") or "info")
    log = get_logger(f"etcdpy.k8s.{args.verb}")
    try:
        return _run_verb(args.verb, settings, env, run_member, log)
    except SettingsError as err:
        print(f"etcdpy k8s {args.verb}: {err}", file=sys.stderr)
        return EXIT_USAGE
    except (GaveUp, ClientError, OSError) as err:
        log.error(f"{args.verb} failed", error=str(err))
        print(f"etcdpy k8s {args.verb}: {err}", file=sys.stderr)
        return EXIT_FAILED
