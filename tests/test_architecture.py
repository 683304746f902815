"""The package's layers: imports run only downward, no cycles, no loose modules, small modules.

ARCHITECTURE.md draws the same picture; this test keeps it true.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "marketpipe"
REPOSITORY = PACKAGE.parent

# Lowest first. A module may import its own layer and any layer below it.
LAYERS: dict[str, int] = {
    "marketpipe.chaos": 0,  # the crash_point hook (its trials are tests/chaos_trials.py)
    "marketpipe.foundation": 0,
    "marketpipe.markettime": 1,
    "marketpipe.observability": 2,
    "marketpipe.connectors": 3,
    "marketpipe.simulator": 3,
    "marketpipe.lake": 4,
    "marketpipe.ingest": 5,
    "marketpipe.bridges": 5,  # the lake into backtesters, beside ingest
    "marketpipe.workflow": 6,
    "marketpipe.commands": 7,
    "marketpipe.cli": 8,
    "marketpipe.__main__": 8,
    "marketpipe": 8,  # the public facade (read_bars, scan_bars): nothing inside imports it
}
# Same-or-lower imports that still cross a wall: the simulator imitates vendors on its own,
# and the connectors never depend on the simulator that tests them.
FORBIDDEN: list[tuple[str, str]] = [
    ("marketpipe.simulator", "marketpipe.connectors"),
    ("marketpipe.connectors", "marketpipe.simulator"),
]
MAX_LINES = 450


def module_name(path: Path) -> str:
    """``marketpipe/lake/reader.py`` -> ``marketpipe.lake.reader``."""
    parts = list(path.relative_to(REPOSITORY).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> tuple[str, int]:
    """The most specific layer entry that owns ``module``."""
    owner = max(
        (name for name in LAYERS if module == name or module.startswith(name + ".")),
        key=len,
    )
    return owner, LAYERS[owner]


def imported_modules(path: Path) -> set[str]:
    """Every ``marketpipe`` module that ``path`` imports, at top level or inside functions."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            # ``from marketpipe.lake import reader`` imports the module marketpipe.lake.reader
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                if module_exists(candidate):
                    found.add(candidate)
    return {name for name in found if name == "marketpipe" or name.startswith("marketpipe.")}


def module_exists(name: str) -> bool:
    """Whether ``name`` is a module or package of ``marketpipe``."""
    relative = Path(*name.split("."))
    return (REPOSITORY / relative).with_suffix(".py").is_file() or (
        REPOSITORY / relative / "__init__.py"
    ).is_file()


def import_graph() -> dict[str, set[str]]:
    """Module -> the marketpipe modules it imports (a package import counts as its __init__)."""
    return {
        module_name(path): imported_modules(path) - {module_name(path)}
        for path in sorted(PACKAGE.rglob("*.py"))
    }


def test_the_package_root_holds_only_the_facade_and_the_cli() -> None:
    loose = sorted(path.name for path in PACKAGE.glob("*.py"))
    assert loose == ["__init__.py", "__main__.py", "cli.py"] or loose == ["__init__.py", "cli.py"]


def test_every_package_says_what_lives_there_and_what_it_may_import() -> None:
    for init in PACKAGE.glob("*/__init__.py"):
        docstring = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert re.search(r"\bimport", docstring, re.IGNORECASE), (
            f"{init}: say what this package may import"
        )


def test_every_module_belongs_to_a_layer() -> None:
    for module in import_graph():
        layer_of(module)  # raises ValueError (max of nothing) for a module outside every layer


def test_imports_run_only_downward() -> None:
    upward = []
    for module, imports in import_graph().items():
        owner, rank = layer_of(module)
        for target in imports:
            _, target_rank = layer_of(target)
            if target_rank > rank:
                upward.append(f"{module} ({owner}, {rank}) -> {target} ({target_rank})")
            for source, wall in FORBIDDEN:
                inside = module == source or module.startswith(source + ".")
                if inside and (target == wall or target.startswith(wall + ".")):
                    upward.append(f"{module} -> {target} crosses the wall {source} | {wall}")
    assert upward == []


def test_no_import_cycles() -> None:
    graph = import_graph()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target)
        path.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)
    assert cycles == []


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: module_name(p))
def test_modules_stay_small(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path}: {lines} lines; split it by responsibility"


def test_the_formatter_is_the_style() -> None:
    sources = [
        *REPOSITORY.glob("marketpipe/**/*.py"),
        *REPOSITORY.glob("tests/*.py"),
        *REPOSITORY.glob("benchmarks/*.py"),
        *REPOSITORY.glob("workflow/rules/*.smk"),
        REPOSITORY / "Snakefile",
    ]
    marker = "fmt: " + "skip"
    skips = [
        str(path) for path in sources for line in path.read_text().splitlines() if marker in line
    ]
    assert len(skips) < 10, skips
