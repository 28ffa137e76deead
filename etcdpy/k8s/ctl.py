"""``etcdpy k8s apply|get|delete|watch|reencrypt|controller``: a kubectl-like command line over
the object store, talking to etcd directly (no API server). Flags, messages and exit codes are
kubectl's where kubectl has them: 0 fine, 1 anything failed (a bad command line too, as kubectl);
connection flags are etcdctl's (also read from the ETCDCTL_* variables etcdctl reads).
docs/k8s-cli.md shows every verb and what differs from kubectl.
"""

from __future__ import annotations

import argparse
import getpass
import importlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any, NoReturn

from etcdpy.k8s import errors, printers
from etcdpy.k8s.apply import (
    ManifestError,
    Prepared,
    apply,
    parse_manifests,
    prepare_all,
    read_source,
)

EXIT_OK = 0
EXIT_FAILED = 1  # kubectl exits with 1 for every failure, a bad command line included

VERBS: dict[str, str] = {
    "apply": "create or update objects from manifests (-f FILE, - for stdin)",
    "get": "print objects as kubectl's tables, or -o json|yaml|wide|name",
    "delete": "delete objects by kind and name, or those of -f FILE",
    "watch": "print a row for every change of a kind (same as get -w)",
    "reencrypt": "rewrite stored objects with the first provider of --encryption-provider-config",
    "controller": "run an example controller (replicaset, node-lifecycle)",
}

# etcdctl's environment variables, read when the flag is not given.
ENV_FLAGS: dict[str, str] = {
    "endpoints": "ETCDCTL_ENDPOINTS",
    "cacert": "ETCDCTL_CACERT",
    "cert": "ETCDCTL_CERT",
    "key": "ETCDCTL_KEY",
    "user": "ETCDCTL_USER",
    "password": "ETCDCTL_PASSWORD",
}

DEFAULT_ENDPOINTS = "127.0.0.1:2379"
DEFAULT_CHUNK_SIZE = 500  # kubectl's --chunk-size


class NotBuilt(Exception):
    """A verb whose part of etcdpy.k8s is not in this build."""


def _optional(module: str) -> Any:
    """A module other parts of the object layer build (encryption, controllers), imported
    when its verb runs."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name is not None and module.startswith(err.name):
            raise NotBuilt(f"{module} is not built in this etcdpy") from err
        raise


class UsageError(Exception):
    """A bad command line (kubectl prints it with "error: " and exits with 1)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message}\nSee '{self.prog} --help' for usage.")


# --- connection -------------------------------------------------------------------------------


def add_connection_flags(parser: argparse.ArgumentParser) -> None:
    """etcdctl's connection flags, ``--root`` and the API server's encryption flag."""
    group = parser.add_argument_group("connection (etcdctl's flags; ETCDCTL_* variables too)")
    group.add_argument(
        "--endpoints", default=None, help=f"comma-separated etcd endpoints ({DEFAULT_ENDPOINTS})"
    )
    group.add_argument("--cacert", default=None, help="verify the server with this CA bundle")
    group.add_argument("--cert", default=None, help="client certificate (TLS)")
    group.add_argument("--key", default=None, help="client key (TLS)")
    group.add_argument("--user", default=None, help="user[:password] for etcd's auth")
    group.add_argument("--password", default=None, help="password of --user")
    group.add_argument(
        "--command-timeout",
        type=float,
        default=10.0,
        help="seconds an etcd request may take before it fails (10)",
    )
    group.add_argument(
        "--root", default="/registry", help="the key prefix objects live under (/registry)"
    )
    group.add_argument(
        "--encryption-provider-config",
        default=None,
        metavar="FILE",
        help="the API server's EncryptionConfiguration: read and write encrypted resources",
    )


def _setting(args: argparse.Namespace, name: str, environ: Mapping[str, str]) -> str:
    value = getattr(args, name, None)
    if value is None:
        value = environ.get(ENV_FLAGS[name], "")
    return str(value)


def connection_settings(
    args: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The keyword arguments of ``ObjectStore.connect`` for these flags and variables."""
    env = os.environ if environ is None else environ
    user = _setting(args, "user", env)
    password = _setting(args, "password", env)
    if user and ":" in user and not password:
        user, password = user.split(":", 1)
    elif user and not password:
        if not sys.stdin.isatty():
            raise UsageError("--user has no password: give user:password or --password")
        password = getpass.getpass("Password: ")  # etcdctl asks too
    return {
        "endpoints": _setting(args, "endpoints", env) or DEFAULT_ENDPOINTS,
        "cacert": _setting(args, "cacert", env),
        "cert": _setting(args, "cert", env),
        "key": _setting(args, "key", env),
        "user": user,
        "password": password,
        "timeout": float(getattr(args, "command_timeout", 10.0)),
    }


def store_from_args(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> Any:
    """An ObjectStore of dicts for these flags (etcdpy.k8s.store, imported here because the
    kubernetes package it loads takes a moment)."""
    from etcdpy.k8s.store import ObjectStore

    settings = connection_settings(args, environ)
    endpoints = settings.pop("endpoints")
    transformers = None
    if getattr(args, "encryption_provider_config", None):
        transformers = _optional("etcdpy.k8s.encryption").EncryptionConfig.load(
            args.encryption_provider_config
        )
    return ObjectStore.connect(
        endpoints, root=args.root, transformers=transformers, typed=False, **settings
    )


# --- the command line -------------------------------------------------------------------------


def _namespace_flags(parser: argparse.ArgumentParser, *, all_namespaces: bool = True) -> None:
    parser.add_argument("-n", "--namespace", default=None, help="the namespace (default)")
    if all_namespaces:
        parser.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace")


def _selector_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-l", "--selector", default="", help="label selector (app=web,tier!=db)")
    parser.add_argument(
        "--field-selector", default="", help="field selector (metadata.name=web,...)"
    )


def _output_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o",
        "--output",
        default="",
        choices=["", "json", "yaml", "wide", "name"],
        help="json, yaml, wide or name (a table by default)",
    )
    parser.add_argument("--show-labels", action="store_true", help="add a LABELS column")
    parser.add_argument("--no-headers", action="store_true", help="tables without the header")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="etcdpy k8s",
        description="Kubernetes objects in etcd, as a kube-apiserver stores them (docs/k8s-cli.md)",
    )
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB", parser_class=_Parser)

    p = sub.add_parser("apply", help=VERBS["apply"], description=VERBS["apply"])
    p.add_argument("-f", "--filename", action="append", required=True, help="file, or - (stdin)")
    _namespace_flags(p, all_namespaces=False)
    add_connection_flags(p)

    p = sub.add_parser("get", help=VERBS["get"], description=VERBS["get"])
    p.add_argument("kind", metavar="KIND", help="pods, po, pod, Pod, deployments.apps, pod/NAME")
    p.add_argument("names", metavar="NAME", nargs="*")
    _namespace_flags(p)
    _selector_flags(p)
    _output_flags(p)
    p.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK_SIZE, help="page size (500)")
    p.add_argument("-w", "--watch", action="store_true", help="then print changes as they come")
    p.add_argument("--ignore-not-found", action="store_true", help="a missing NAME is no error")
    add_connection_flags(p)

    p = sub.add_parser("delete", help=VERBS["delete"], description=VERBS["delete"])
    p.add_argument("kind", metavar="KIND", nargs="?", help="the kind (or KIND/NAME)")
    p.add_argument("names", metavar="NAME", nargs="*")
    p.add_argument("-f", "--filename", action="append", default=[], help="delete what FILE has")
    _namespace_flags(p, all_namespaces=False)
    p.add_argument("--ignore-not-found", action="store_true", help="a missing NAME is no error")
    add_connection_flags(p)

    p = sub.add_parser("watch", help=VERBS["watch"], description=VERBS["watch"])
    p.add_argument("kind", metavar="KIND")
    p.add_argument("names", metavar="NAME", nargs="?", default=None)
    _namespace_flags(p)
    _selector_flags(p)
    _output_flags(p)
    p.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK_SIZE, help="page size (500)")
    add_connection_flags(p)

    p = sub.add_parser("reencrypt", help=VERBS["reencrypt"], description=VERBS["reencrypt"])
    p.add_argument(
        "--resource",
        action="append",
        default=None,
        help="only this group-resource (secrets, ...); repeatable",
    )
    p.add_argument("--dry-run", action="store_true", help="count, write nothing")
    add_connection_flags(p)

    p = sub.add_parser("controller", help=VERBS["controller"], description=VERBS["controller"])
    p.add_argument("name", metavar="NAME", help="replicaset or node-lifecycle")
    p.add_argument("rest", nargs=argparse.REMAINDER, help="the controller's own flags")
    return parser


# --- output -----------------------------------------------------------------------------------


@dataclass
class Streams:
    out: IO[str]
    err: IO[str]
    stdin: Callable[[], str]


def _status_line(err: errors.StatusError) -> str:
    if isinstance(err, errors.ServiceUnavailable):
        return f"Unable to connect to the server: {err.message}\n"
    return f"Error from server ({err.reason}): {err.message}\n"


def _resolve(store: Any, what: str) -> Any:
    try:
        return store.resolve(what)
    except errors.StatusError as err:
        raise UsageError(err.message) from err


def _split_kind(kind: str, names: Sequence[str]) -> tuple[str, list[str]]:
    """kubectl's TYPE/NAME form: "pod/web" is kind "pod", name "web"."""
    if "/" in kind:
        kind, _, name = kind.partition("/")
        return kind, [name, *names]
    return kind, list(names)


def _namespace_for(resource: Any, args: argparse.Namespace) -> str | None:
    """None: every namespace (lists of -A, or cluster-scoped kinds, where -n is ignored)."""
    if not resource.namespaced or getattr(args, "all_namespaces", False):
        return None
    return str(args.namespace or "default")


def _no_resources(resource: Any, namespace: str | None) -> str:
    if resource.namespaced and namespace is not None:
        return f"No resources found in {namespace} namespace.\n"
    return "No resources found\n"


def _table(resource: Any, args: argparse.Namespace, with_namespace: bool) -> printers.TablePrinter:
    return printers.TablePrinter(
        printers.table_for(resource.kind, builtin=resource.model is not None),
        wide=args.output == "wide",
        with_namespace=with_namespace,
        show_labels=args.show_labels,
        no_headers=args.no_headers,
    )


def _name_line(resource: Any, obj: Any) -> str:
    return printers.name_line(resource.kind, resource.group, _name(obj))


def _render(objects: Sequence[Any], args: argparse.Namespace, single: bool) -> str:
    """-o json/yaml output: one object, or kubectl's List (tables: TablePrinter)."""
    value = objects[0] if single else printers.as_list(objects)
    return printers.to_json(value) if args.output == "json" else printers.to_yaml(value)


def _name(obj: Any) -> str:
    metadata = obj.get("metadata") if isinstance(obj, Mapping) else None
    return str(metadata.get("name", "")) if isinstance(metadata, Mapping) else ""


def _list_all(store: Any, resource: Any, namespace: str | None, args: argparse.Namespace) -> Any:
    """Every page of a list (``--chunk-size`` objects per request, like kubectl)."""
    items: list[Any] = []
    token = ""
    while True:
        page = store.list(
            resource,
            namespace=namespace,
            label_selector=args.selector,
            field_selector=args.field_selector,
            limit=max(0, args.chunk_size),
            continue_=token,
        )
        items.extend(page.items)
        token = page.continue_
        if not token:
            return items, page.resource_version


# --- verbs ------------------------------------------------------------------------------------


# kubectl's "all" category: the built-in kinds it lists for ``get all``.
ALL_CATEGORY = (
    "pods",
    "replicationcontrollers",
    "services",
    "daemonsets.apps",
    "deployments.apps",
    "replicasets.apps",
    "statefulsets.apps",
    "horizontalpodautoscalers.autoscaling",
    "jobs.batch",
    "cronjobs.batch",
)


def _kinds(store: Any, kind_arg: str) -> list[Any]:
    """The resources of ``pods``, ``pods,services`` or ``all``."""
    kinds: list[Any] = []
    for part in kind_arg.split(","):
        names = ALL_CATEGORY if part == "all" else (part,)
        kinds.extend(_resolve(store, name) for name in names)
    return kinds


def _get(store: Any, args: argparse.Namespace, io: Streams, stop: threading.Event) -> int:
    kind_arg, names = _split_kind(args.kind, args.names)
    if names and getattr(args, "all_namespaces", False):
        raise UsageError("a resource cannot be retrieved by name across all namespaces")
    resources = _kinds(store, kind_arg)
    if args.watch:
        if len(resources) > 1:
            raise UsageError("you may only specify a single resource type")
        return _watch(store, resources[0], args, io, names[0] if names else None, stop)
    several = len(resources) > 1
    failed = False
    found: list[tuple[Any, list[Any]]] = []
    for resource in resources:
        namespace = _namespace_for(resource, args)
        if names:
            objects = []
            for name in names:
                try:
                    objects.append(store.get(resource, name, namespace=namespace or "default"))
                except errors.NotFound as err:
                    if not args.ignore_not_found:
                        failed = True
                        io.err.write(_status_line(err))
        else:
            objects, _ = _list_all(store, resource, namespace, args)
        if objects:
            found.append((resource, objects))
    if args.output in ("json", "yaml"):
        everything = [obj for _, objects in found for obj in objects]
        single = len(everything) == 1 and len(names) == 1 and not several
        if everything or not names:  # an empty List for an empty list, nothing for a miss
            io.out.write(_render(everything, args, single))
    elif args.output == "name":
        for resource, objects in found:
            io.out.write("".join(_name_line(resource, obj) for obj in objects))
    else:
        tables = []
        for resource, objects in found:
            with_namespace = _namespace_for(resource, args) is None and resource.namespaced
            table = _table(resource, args, with_namespace)
            table.kind_prefix = printers.kind_name(resource.kind, resource.group) if several else ""
            tables.append(table.render(objects))
        io.out.write("\n".join(tables))
    if not found and not names and args.output not in ("json", "yaml"):
        io.err.write(_no_resources(resources[0], _namespace_for(resources[0], args)))
    return EXIT_FAILED if failed else EXIT_OK


@contextmanager
def _stopped_by_signals(stop: threading.Event) -> Iterator[None]:
    """kubectl's termination signals (SIGHUP, SIGINT, SIGTERM, SIGQUIT) set ``stop`` (only the
    main thread may install handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signals = (signal.SIGHUP, signal.SIGINT, signal.SIGTERM, signal.SIGQUIT)
    previous = {s: signal.getsignal(s) for s in signals}
    for signum in previous:
        signal.signal(signum, lambda *_: stop.set())
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _watch(
    store: Any,
    resource: Any,
    args: argparse.Namespace,
    io: Streams,
    name: str | None,
    stop: threading.Event,
) -> int:
    """kubectl get -w: the current objects, then a row per event until a termination signal
    (then exit 1, as kubectl's interrupt handler does: kubectl/pkg/util/interrupt)."""
    namespace = _namespace_for(resource, args)
    if name:
        fields = [f for f in [args.field_selector, f"metadata.name={name}"] if f]
        args.field_selector = ",".join(fields)
    table = _table(resource, args, namespace is None and resource.namespaced)
    printed = [0]

    def emit(objects: Sequence[Any]) -> None:
        if not objects:
            return
        if args.output in ("json", "name", "yaml"):
            parts = []
            for obj in objects:
                if args.output == "yaml" and printed[0]:
                    parts.append("---\n")  # kubectl's YAML printer, between objects
                rendered = _name_line(resource, obj) if args.output == "name" else None
                parts.append(rendered or _render([obj], args, single=True))
                printed[0] += 1
            text = "".join(parts)
        else:
            text = table.render(objects)
        io.out.write(text)
        io.out.flush()

    objects, revision = _list_all(store, resource, namespace, args)
    emit(objects)
    stream = store.watch(
        resource,
        namespace=namespace,
        resource_version=revision,
        label_selector=args.selector,
        field_selector=args.field_selector,
    )
    failure: list[BaseException] = []

    def pump() -> None:
        try:
            for event in stream:
                if event.type != "BOOKMARK":
                    emit([event.object])
        except BaseException as err:  # handed to the main thread, which reports it
            failure.append(err)
        finally:
            stop.set()

    worker = threading.Thread(target=pump, name="etcdpy-k8s-watch", daemon=True)
    with _stopped_by_signals(stop):
        worker.start()
        while not stop.wait(0.2):
            pass
    stream.stop()
    worker.join(timeout=5)
    if failure:
        raise failure[0]
    return EXIT_FAILED  # interrupted: kubectl's exit code


def _apply(store: Any, args: argparse.Namespace, io: Streams) -> int:
    objects: list[tuple[str, dict[str, Any]]] = []
    for path in args.filename:
        text = read_source(path, io.stdin)
        objects.extend((path, obj) for obj in parse_manifests(text, path))
    if not objects:
        raise UsageError("no objects passed to apply")

    def resolve(obj: Mapping[str, Any]) -> Any:
        source = next(path for path, o in objects if o is obj)
        try:
            return _for_object(store, obj)
        except errors.StatusError as err:
            namespace = (obj.get("metadata") or {}).get("namespace", "")
            raise UsageError(
                f'resource mapping not found for name: "{_name(obj)}" namespace: '
                f'"{namespace}" from "{source}": no matches for kind "{obj["kind"]}" in version '
                f'"{obj["apiVersion"]}"\nensure CRDs are installed first'
            ) from err

    prepared: list[Prepared] = prepare_all([o for _, o in objects], resolve, args.namespace)
    for item in prepared:
        result = apply(store, item)
        io.err.write(result.warning)
        io.out.write(
            printers.name_line(item.resource.kind, item.resource.group, item.name, result.outcome)
        )
    return EXIT_OK


def _for_object(store: Any, obj: Mapping[str, Any]) -> Any:
    """The resource of a manifest's apiVersion and kind, custom resources included (looked up
    among the stored CustomResourceDefinitions, as the API server's discovery would)."""
    try:
        return store.registry.for_object(obj)
    except errors.BadRequest:
        resource = store.resolve(str(obj["kind"]))
        if resource.api_version != obj["apiVersion"] or resource.kind != obj["kind"]:
            raise
        return resource


def _delete(store: Any, args: argparse.Namespace, io: Streams) -> int:
    targets: list[tuple[Any, str, str | None]] = []
    if args.filename:
        if args.kind:
            raise UsageError("there is no need to specify a resource type as a separate argument "
                             "when passing arguments in resource/name form or with -f")  # fmt: skip
        for path in args.filename:
            for obj in parse_manifests(read_source(path, io.stdin), path):
                resource = _for_object(store, obj)
                namespace = (obj.get("metadata") or {}).get("namespace") or args.namespace
                targets.append((resource, _name(obj), namespace if resource.namespaced else None))
    else:
        if not args.kind:
            raise UsageError("You must provide one or more resources by argument or filename.")
        kind, names = _split_kind(args.kind, args.names)
        resource = _resolve(store, kind)
        if not names:
            raise UsageError("resource(s) were provided, but no name was specified")
        namespace = (args.namespace or "default") if resource.namespaced else None
        targets.extend((resource, name, namespace) for name in names)
    failed = False
    for resource, name, namespace in targets:
        if not name:
            raise errors.Invalid("resource name may not be empty")
        try:
            store.delete(resource, name, namespace=namespace)
        except errors.NotFound as err:
            if not args.ignore_not_found:
                failed = True
                io.err.write(_status_line(err))
            continue
        io.out.write(printers.short_line(resource.kind, resource.group, name, "deleted"))
    return EXIT_FAILED if failed else EXIT_OK


def _reencrypt(args: argparse.Namespace, io: Streams, environ: Mapping[str, str]) -> int:
    if not args.encryption_provider_config:
        raise UsageError("reencrypt needs --encryption-provider-config FILE")
    from etcdpy.k8s.etcd import EtcdClient

    config = _optional("etcdpy.k8s.encryption").EncryptionConfig.load(
        args.encryption_provider_config
    )
    reencrypt = _optional("etcdpy.k8s.reencrypt").reencrypt
    settings = connection_settings(args, environ)
    client = EtcdClient.connect(settings.pop("endpoints"), **settings)
    try:
        report = reencrypt(
            client, config, root=args.root, resources=args.resource, dry_run=args.dry_run
        )
    finally:
        client.close()
    for line in report_lines(report):
        io.out.write(line + "\n")
    return EXIT_FAILED if report_failed(report) else EXIT_OK


def report_lines(report: Any) -> list[str]:
    """One line per resource of a ReencryptReport (etcdpy.k8s.reencrypt)."""
    lines = getattr(report, "lines", None)
    if callable(lines):
        return [str(line) for line in lines()]
    return [line for line in str(report).splitlines() if line]


def report_failed(report: Any) -> bool:
    failed = getattr(report, "failed", 0)
    return bool(failed() if callable(failed) else failed)


def _controller(args: argparse.Namespace, io: Streams, environ: Mapping[str, str]) -> int:
    controllers: dict[str, Any] = _optional("etcdpy.k8s.controllers").CONTROLLERS
    command = controllers.get(args.name)
    if command is None:
        known = ", ".join(sorted(controllers))
        raise UsageError(f'unknown controller "{args.name}" (known: {known})')
    parser = _Parser(prog=f"etcdpy k8s controller {args.name}", description=command.summary)
    command.add_arguments(parser)
    add_connection_flags(parser)
    own = parser.parse_args(args.rest)
    store = store_from_args(own, environ)
    try:
        return int(command.run(own, store))
    finally:
        store.close()


def _run(
    args: argparse.Namespace, io: Streams, environ: Mapping[str, str], stop: threading.Event
) -> int:
    if args.verb == "reencrypt":
        return _reencrypt(args, io, environ)
    if args.verb == "controller":
        return _controller(args, io, environ)
    store = store_from_args(args, environ)
    try:
        if args.verb == "apply":
            return _apply(store, args, io)
        if args.verb == "get":
            return _get(store, args, io, stop)
        if args.verb == "watch":
            kind, names = _split_kind(args.kind, [args.names] if args.names else [])
            if len(names) > 1:
                raise UsageError("watch takes one NAME")
            return _watch(store, _resolve(store, kind), args, io, names[0] if names else None, stop)
        return _delete(store, args, io)
    finally:
        store.close()


def main(
    argv: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    stdout: IO[str] | None = None,
    stderr: IO[str] | None = None,
    stdin: IO[str] | None = None,
    stop: threading.Event | None = None,
) -> int:
    """``etcdpy k8s VERB ...``; returns the exit code. ``stop`` ends a watch (tests; the
    termination signals set it when running in the main thread)."""
    env = os.environ if environ is None else environ
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    source = stdin or sys.stdin
    io = Streams(out, err, source.read)
    try:
        args = build_parser().parse_args(list(sys.argv[2:] if argv is None else argv))
        return _run(args, io, env, stop or threading.Event())
    except SystemExit as exit_:  # --help
        return int(exit_.code or 0)
    except BrokenPipeError:  # | head: the reader is gone; no traceback at exit
        if out is sys.stdout:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    except (UsageError, ManifestError, NotBuilt) as problem:
        err.write(f"error: {problem}\n")
    except errors.StatusError as problem:
        err.write(_status_line(problem))
    except (OSError, ValueError) as problem:  # unreadable TLS files, a bad encryption config
        err.write(f"error: {problem}\n")
    return EXIT_FAILED
