"""The docs name things that exist: links resolve, paths and modules are in the tree, make targets
are in the Makefile. Files move (the layout issue moved dozens); this keeps README.md and docs/
true when they do."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# [text](target): the target up to the closing parenthesis (no spaces, as the docs write them).
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
# A repository path, not part of a longer path or URL (`.venv/bin/etcdpy`, `/tmp/tests/x`).
PATH = re.compile(r"(?<![\w./-])((?:etcdpy|tests|bench|deploy|proto|docs)/[\w./-]*)")
MODULE = re.compile(r"python -m ((?:etcdpy|bench|tests)(?:\.\w+)+)")
# `make X` as a command: at the start of a code line or of an inline code span.
MAKE = re.compile(r"(?:^|`)\s*make ([a-z][\w-]*)", re.MULTILINE)
MAKE_TARGET = re.compile(r"^([a-z][\w-]*):", re.MULTILINE)
FENCE = re.compile(r"^\s*```")


def _prose_and_code(text: str) -> tuple[list[str], list[str]]:
    """The lines outside fenced code blocks and the lines inside them."""
    prose: list[str] = []
    code: list[str] = []
    inside = False
    for line in text.splitlines():
        if FENCE.match(line):
            inside = not inside
            continue
        (code if inside else prose).append(line)
    return prose, code


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to dashes."""
    text = heading.strip().lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    prose, _ = _prose_and_code(path.read_text())
    seen: dict[str, int] = {}
    out: set[str] = set()
    for line in prose:
        match = re.match(r"#{1,6} (.+)", line)
        if not match:
            continue
        slug = _slug(match.group(1))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        out.add(slug if count == 0 else f"{slug}-{count}")
    return out


def _name(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _broken_link(doc: Path, target: str) -> str | None:
    if re.match(r"[a-z]+:", target):  # https:, mailto:
        return None
    file_part, _, anchor = target.partition("#")
    dest = (doc.parent / file_part).resolve() if file_part else doc
    if not dest.exists():
        return f"{target}: {dest} does not exist"
    if anchor and dest.suffix == ".md" and anchor not in anchors(dest):
        return f"{target}: no heading #{anchor} in {_name(dest)}"
    return None


@pytest.mark.parametrize("doc", DOCS, ids=_name)
def test_every_relative_link_resolves(doc: Path) -> None:
    broken = [
        problem
        for target in LINK.findall(doc.read_text())
        if (problem := _broken_link(doc, target)) is not None
    ]
    assert broken == []


@pytest.mark.parametrize("doc", DOCS, ids=_name)
def test_every_repository_path_exists(doc: Path) -> None:
    paths = {p.rstrip(".,:;") for p in PATH.findall(doc.read_text())}
    assert sorted(p for p in paths if not (ROOT / p).exists()) == []


@pytest.mark.parametrize("doc", DOCS, ids=_name)
def test_every_python_module_exists(doc: Path) -> None:
    missing = []
    for module in set(MODULE.findall(doc.read_text())):
        base = ROOT / module.replace(".", "/")
        if not (base.with_suffix(".py").exists() or (base / "__init__.py").exists()):
            missing.append(module)
    assert sorted(missing) == []


@pytest.mark.parametrize("doc", DOCS, ids=_name)
def test_every_make_target_exists(doc: Path) -> None:
    targets = set(MAKE_TARGET.findall((ROOT / "Makefile").read_text()))
    prose, code = _prose_and_code(doc.read_text())
    named = set(MAKE.findall("\n".join(code))) | set(MAKE.findall("\n".join(prose)))
    assert sorted(named - targets) == []


def test_the_readme_leads_to_not_yet_there() -> None:
    """The project's rule: every unbuilt feature is listed under "Not yet there", and the README
    leads there."""
    readme = (ROOT / "README.md").read_text()
    assert "compatibility.md#not-yet-there" in readme
    assert "not-yet-there" in anchors(ROOT / "docs" / "compatibility.md")


def test_the_checks_see_what_they_check() -> None:
    """Guards the regular expressions: a broken pattern would pass every doc."""
    text = (ROOT / "README.md").read_text()
    assert LINK.findall(text)
    assert "docs/running.md" in PATH.findall(text)
    assert _slug("Chaos: faults on real processes") == "chaos-faults-on-real-processes"
    assert _slug("The gRPC server (`etcdpy/h2grpc/`)") == "the-grpc-server-etcdpyh2grpc"
    assert MAKE.findall("`make run` and\n  make test  # x\nrun make deploy") == ["run", "test"]
