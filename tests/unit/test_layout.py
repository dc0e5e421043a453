"""The house rules of the source tree, read from the code itself (ast), so they cannot drift:

* detectors/ is pure: no streams/, no lab/, no Kafka, Faust or HTTP;
* streams/ never imports the lab; the lab registers its commands by entry point;
* the link stages and the codecs run without Kafka, Faust or HTTP, and without the worker's
  wiring or the tools; the worker never imports the tools;
* no module over 400 lines unless its docstring says why ("Over 400 lines").
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted(p for d in ("streams", "detectors", "lab") for p in (ROOT / d).rglob("*.py"))
IO = ("aiokafka", "faust", "mode", "aiohttp")


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth of its code (lazy imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


def _under(mod: str, *roots: str) -> bool:
    return any(mod == r or mod.startswith(r + ".") for r in roots)


def _module(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


RULES = [  # (importer package, packages it must not import)
    ("detectors", ("streams", "lab", *IO)),
    ("streams", ("lab",)),
    (
        "streams.links",
        (*IO, "streams.worker", "streams.tools", "streams.dispatch", "streams.probe"),
    ),
    ("streams.codecs", (*IO, "streams.links", "streams.worker", "streams.tools", "streams.kafka")),
    ("streams.worker", ("streams.tools", "streams.dispatch", "streams.probe")),
]


@pytest.mark.parametrize(("package", "forbidden"), RULES, ids=[r[0] for r in RULES])
def test_no_import_crosses_a_wall(package, forbidden):
    crossing = [
        (_module(p), m)
        for p in SOURCES
        if _under(_module(p), package)
        for m in sorted(imports(p))
        if _under(m, *forbidden)
    ]
    assert not crossing


def test_no_module_is_over_400_lines_without_saying_why():
    long = [p for p in SOURCES if len(p.read_text().splitlines()) > 400]
    unexplained = [
        str(p.relative_to(ROOT)) for p in long
        if "Over 400 lines" not in (ast.get_docstring(ast.parse(p.read_text())) or "")
    ]  # fmt: skip
    assert long and not unexplained


def test_the_rules_would_see_a_crossing(tmp_path):
    """The check itself: a lazy import inside a function is found."""
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from streams.tools.bench import run\n")
    assert "streams.tools.bench" in imports(f) and _under("streams.tools.bench", "streams.tools")
