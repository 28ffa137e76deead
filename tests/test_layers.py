"""The import graph of etcdpy: no circles between modules, and packages only import downward.

Every import counts, also one under ``if TYPE_CHECKING:`` or inside a function: it is still an
arrow from one module to another (it only runs later, or only for the type checker). The
generated code (etcdpy/pb) is left out; importing it is allowed everywhere.

The layers, top to bottom (a package may import only what is below it; see MAY_IMPORT):

    cli, tools, testing -> clientport -> frontend -> corelink -> api -> server
    -> (server.ops, membership, lease, auth, wal, peer) -> (mvcc, raft, h2grpc)
    -> the base (observability, tls, config, errors, gofmt, outbox, pb, the etcdpy package itself)

Each package's ``__init__.py`` says what it owns and, on a line ``May import: ...``, what it may
import; that line is checked against MAY_IMPORT here, so the two stay in step.
"""

from __future__ import annotations

import ast
import itertools
import re
from dataclasses import dataclass
from pathlib import Path

import etcdpy

ROOT = Path(etcdpy.__file__).parent
REPO = ROOT.parent

# What everything may import. ("etcdpy" is the package itself: ETCD_API_VERSION.)
BASE = frozenset(
    {"etcdpy", "call", "config", "errors", "gofmt", "outbox", "pb", "observability", "tls"}
)
LIBRARIES = frozenset({"mvcc", "raft", "h2grpc", "bbolt"})
MEMBER_PARTS = frozenset({"server.ops", "membership", "lease", "auth", "wal", "peer"})
_BELOW_API = frozenset({"server"}) | MEMBER_PARTS | LIBRARIES | BASE
_BELOW_CLIENTPORT = frozenset({"frontend", "corelink", "api"}) | _BELOW_API

# Package (or top-level module) -> the packages it may import. Keep it a DAG (tested below).
MAY_IMPORT: dict[str, frozenset[str]] = {
    "cli": frozenset({"k8s", "statefulset", "tools", "testing", "clientport"}) | _BELOW_CLIENTPORT,
    "statefulset": frozenset({"tools", "wal"}) | BASE,
    # A client library of Kubernetes objects in etcd: it talks to a member only over gRPC.
    "k8s": BASE,
    "tools": frozenset({"clientport"}) | _BELOW_CLIENTPORT,
    "testing": frozenset({"clientport"}) | _BELOW_CLIENTPORT,
    "clientport": _BELOW_CLIENTPORT,
    "frontend": frozenset({"corelink", "api"}) | _BELOW_API,
    "corelink": frozenset({"api"}) | _BELOW_API,
    "api": _BELOW_API,
    "server": MEMBER_PARTS | LIBRARIES | BASE,
    "server.ops": frozenset({"membership", "lease", "wal", "peer"}) | LIBRARIES | BASE,
    "membership": frozenset({"peer"}) | LIBRARIES | BASE,
    "lease": LIBRARIES | BASE,
    "auth": LIBRARIES | BASE,
    "wal": LIBRARIES | BASE,
    "peer": LIBRARIES | BASE,
    # The pure libraries: no metrics, no logging set-up, no config (raft, mvcc), as etcd's.
    "mvcc": frozenset({"etcdpy", "pb"}),
    "raft": frozenset({"etcdpy"}),
    "bbolt": frozenset({"etcdpy"}),
    "h2grpc": BASE,
    "observability": BASE - {"observability", "call", "tls"},
    "tls": frozenset({"etcdpy", "config"}),
    "config": frozenset({"etcdpy"}),
    "errors": frozenset({"etcdpy"}),
    "gofmt": frozenset({"etcdpy"}),
    "outbox": frozenset({"etcdpy"}),
    "call": frozenset(),
    "etcdpy": frozenset(),
}

# Arrows against the layers that are left on purpose: (module, package it imports) -> why.
EXCEPTIONS: dict[tuple[str, str], str] = {
    (
        "etcdpy.server.etcd_server",
        "corelink",
    ): "the core's end of the replica feed (corelink.replica_feed): the server creates it and "
    "flushes it inside apply, before it resolves the waiters (the front-ends hear of a write "
    "before its client does); handing it in from cli/run.py would retype server.feed for "
    "corelink/core.py and clientport/listeners.py",
}

# Module circles left on purpose: the set of modules -> why. (None today; an entry must also be
# argued in docs/ARCHITECTURE.md.)
CYCLES_LEFT: dict[frozenset[str], str] = {}


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the imported etcdpy module (or package)
    path: Path
    line: int

    def where(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[:2] == ["etcdpy", "pb"]:
            continue
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The etcdpy module a dotted name is (or is in); None outside etcdpy or in etcdpy.pb."""
    if name != "etcdpy" and not name.startswith("etcdpy."):
        return None
    if name == "etcdpy.pb" or name.startswith("etcdpy.pb."):
        return "etcdpy.pb"
    while name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def _imports(module: str, path: Path) -> list[Import]:
    is_package = path.name == "__init__.py"
    found: list[Import] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if not isinstance(node, ast.Import | ast.ImportFrom):
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                package = module.split(".") if is_package else module.split(".")[:-1]
                package = package[: len(package) - node.level + 1]
                base = ".".join([*package, base] if base else package)
            # `from package import submodule` imports the submodule
            names = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
                for alias in node.names
            ]
        for name in names:
            target = _resolve(name)
            if target is not None and target != module:
                found.append(Import(module, target, path, node.lineno))
    return found


IMPORTS = [imp for module, path in MODULES.items() for imp in _imports(module, path)]


def package_of(module: str) -> str:
    """The layer a module belongs to: its package below etcdpy (server.ops is a layer of its
    own), or the name of a top-level module (config, errors, ...)."""
    parts = module.split(".")[1:]
    if not parts:
        return "etcdpy"
    if parts[:2] == ["server", "ops"]:
        return "server.ops"
    return parts[0]


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of the graph (its nodes in order, the first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)) is not None:
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)) is not None:
            return found
    return None


def test_no_import_cycle_between_modules() -> None:
    left = set(CYCLES_LEFT)
    graph: dict[str, set[str]] = {}
    for imp in IMPORTS:
        if not any({imp.source, imp.target} <= cycle for cycle in CYCLES_LEFT):
            graph.setdefault(imp.source, set()).add(imp.target)
    cycle = _find_cycle(graph)
    if cycle is not None:
        arrows = []
        for source, target in itertools.pairwise(cycle):
            imp = next(i for i in IMPORTS if i.source == source and i.target == target)
            arrows.append(f"  {imp.where()}: {source} imports {target}")
        raise AssertionError("an import circle between etcdpy modules:\n" + "\n".join(arrows))
    # A circle left on purpose that is gone must leave CYCLES_LEFT too.
    for members in left:
        sub = {
            m: {i.target for i in IMPORTS if i.source == m and i.target in members} for m in members
        }
        assert _find_cycle(sub) is not None, f"no circle among {sorted(members)}: drop it"


def test_packages_import_only_downward() -> None:
    unknown = sorted({package_of(m) for m in MODULES} - set(MAY_IMPORT))
    assert not unknown, f"packages missing from MAY_IMPORT in {__file__}: {unknown}"
    wrong = []
    used_exceptions = set()
    for imp in IMPORTS:
        source, target = package_of(imp.source), package_of(imp.target)
        if source == target or target in MAY_IMPORT[source]:
            continue
        if (imp.source, target) in EXCEPTIONS:
            used_exceptions.add((imp.source, target))
            continue
        wrong.append(f"  {imp.where()}: {imp.source} imports {imp.target} ({source} -> {target})")
    header = "imports against the layers (tests/test_layers.py MAY_IMPORT):\n"
    assert not wrong, header + "\n".join(wrong)
    stale = sorted(set(EXCEPTIONS) - used_exceptions)
    assert not stale, f"exceptions no longer needed, drop them from EXCEPTIONS: {stale}"


def test_the_layers_are_a_dag() -> None:
    graph = {package: set(allowed) for package, allowed in MAY_IMPORT.items()}
    cycle = _find_cycle(graph)
    assert cycle is None, f"MAY_IMPORT lets packages import each other: {' -> '.join(cycle)}"


def _declared(doc: str) -> frozenset[str] | None:
    """The packages a docstring's ``May import:`` paragraph names ("the base": BASE); the
    paragraph ends at a blank line."""
    match = re.search(r"^May import:(.*?)(?:\n\s*\n|\Z)", doc, re.MULTILINE | re.DOTALL)
    if match is None:
        return None
    text = match.group(1)
    names = set(re.findall(r"[a-z][a-z0-9_.]*[a-z0-9]", text)) & (set(MAY_IMPORT) | {"pb"})
    if "the base" in " ".join(text.split()):
        names |= BASE
    return frozenset(names)


def test_package_docstrings_say_what_the_package_may_import() -> None:
    wrong = []
    for module, path in MODULES.items():
        if path.name != "__init__.py" or module == "etcdpy":
            continue
        package = package_of(module)
        if module.count(".") > 1 and package != "server.ops":
            continue  # a sub-package of a layer is covered by its layer's docstring
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        declared = _declared(doc)
        if declared is None:
            wrong.append(f"  {path.relative_to(REPO)}: no docstring with a 'May import:' line")
        elif declared != MAY_IMPORT[package]:
            missing = sorted(MAY_IMPORT[package] - declared)
            extra = sorted(declared - MAY_IMPORT[package])
            wrong.append(f"  {path.relative_to(REPO)}: missing {missing}, not allowed {extra}")
    assert not wrong, "package docstrings out of step with MAY_IMPORT:\n" + "\n".join(wrong)
