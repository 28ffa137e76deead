"""The ``etcdpy`` command: etcd's command line in front of ``etcdpy.cli.run``.

``etcdpy [flags]`` starts a member; ``etcdpy benchmark ...`` runs the benchmark tool;
``etcdpy gateway start ...`` runs etcd's L4 gateway (etcdpy.cli.gateway, whose bad flags exit
with 1, as etcd's cobra commands do); ``etcdpy k8s <verb>`` runs the StatefulSet commands
(etcdpy.statefulset; ``bootstrap`` ends in this module's member start), and the object
verbs (``etcdpy k8s get``, apply, delete, watch, reencrypt, controller) run etcdpy.k8s.ctl.
Exit codes: 0 fine, 1 configuration refused (as etcd) or server failure, 2 bad command line
or a feature not built yet.
"""

from __future__ import annotations

import importlib
import platform
import sys
from collections.abc import Callable, Mapping, Sequence

from etcdpy import ETCD_API_VERSION, __version__
from etcdpy.cli.flags import (
    EXIT_CONFIG,
    EXIT_USAGE,
    FlagError,
    NotBuiltYet,
    ParseOutcome,
    help_text,
    parse_server_args,
    version_text,
)
from etcdpy.config import ConfigError, ServerConfig, UnsupportedError
from etcdpy.observability.logging import configure_logging, get_logger

__all__ = ["main"]

# etcd's own subcommands that etcdpy does not have.
_NOT_BUILT_COMMANDS = ("grpc-proxy",)


def _lazy(module: str, attr: str) -> Callable[..., int] | None:
    """``module.attr``, or None when ``module`` does not exist (yet); other errors raise."""
    try:
        loaded = importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name is not None and (err.name == module or module.startswith(err.name + ".")):
            return None
        raise
    function: Callable[..., int] = getattr(loaded, attr)
    return function


def _run_benchmark(argv: Sequence[str]) -> int:
    benchmark = _lazy("etcdpy.tools.benchmark", "main")
    if benchmark is None:
        print(
            "etcdpy: the benchmark tool (etcdpy.tools.benchmark) is not built yet", file=sys.stderr
        )
        return 1
    return int(benchmark(list(argv)) or 0)


def _usage_error(message: str) -> int:
    print(f"{message}\nSee 'etcdpy --help'.", file=sys.stderr)
    return EXIT_USAGE


def _parse(argv: Sequence[str], environ: Mapping[str, str] | None) -> ParseOutcome | int:
    try:
        return parse_server_args(argv, environ)
    except FlagError as err:
        return _usage_error(str(err))
    except (NotBuiltYet, UnsupportedError) as err:
        return _usage_error(f"etcdpy: {err}")
    except ConfigError as err:
        # etcd logs this through its logger and exits with 1; so do we.
        configure_logging()
        get_logger("etcdpy.cli").warning("failed to verify flags", error=str(err))
        return EXIT_CONFIG


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Entry point of the ``etcdpy`` console script; returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "benchmark":
        return _run_benchmark(args[1:])
    if args and args[0] == "snapshot":  # etcdutl's snapshot restore | status
        from etcdpy.tools.snapshot import main as snapshot_main

        return snapshot_main(args[1:])
    if args and args[0] == "gateway":  # etcd gateway start: the L4 proxy
        from etcdpy.cli.gateway import main as gateway_main

        return gateway_main(args[1:])
    if args and args[0] == "k8s":  # the StatefulSet's commands, and the object commands
        from etcdpy.statefulset.commands import OBJECT_VERBS
        from etcdpy.statefulset.commands import main as k8s_main

        if len(args) > 1 and args[1] in OBJECT_VERBS:
            from etcdpy.k8s.ctl import main as ctl_main

            return ctl_main(args[1:], environ)

        return k8s_main(args[1:], run_member=lambda env: main([], env))
    if args and args[0] in _NOT_BUILT_COMMANDS:
        return _usage_error(f"etcdpy: 'etcd {args[0]}' is not built yet in etcdpy")

    outcome = _parse(args, environ)
    if isinstance(outcome, int):
        return outcome
    if outcome.action == "help":
        print(help_text())
        return 0
    if outcome.action == "version":
        print(version_text(), end="")
        return 0
    config = outcome.config
    assert config is not None
    configure_logging(config.log_level, config.log_outputs)
    log = get_logger("etcdpy.cli")
    for warning in outcome.warnings:
        log.warning(warning)
    return _start(config)


def _start(config: ServerConfig) -> int:
    log = get_logger("etcdpy.cli")
    log.info(
        "starting etcdpy",
        etcdpy_version=__version__,
        etcd_api_version=ETCD_API_VERSION,
        python_version=platform.python_version(),
        name=config.name,
        data_dir=config.data_dir,
    )
    # etcd sets up peer TLS before anything else and refuses to start when it cannot work.
    from etcdpy.clientport.tls import load_client_tls
    from etcdpy.frontend.supervisor import secure_flags
    from etcdpy.peer.tls import load_peer_tls

    try:
        load_peer_tls(config, quiet=True)
        load_client_tls(config, quiet=True)  # then client TLS, as etcd's StartEtcd
        secure_flags(config.listen_client_urls)
    except ConfigError as err:  # etcdpy.tls.info.TLSSetupError among them
        log.error("cannot start member", error=str(err))
        return EXIT_CONFIG
    run = _lazy("etcdpy.cli.run", "run")
    if run is None:
        print(
            "etcdpy: the server (etcdpy.cli.run) is not built yet; the configuration was "
            "parsed and is valid",
            file=sys.stderr,
        )
        return 1
    try:
        return int(run(config) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
