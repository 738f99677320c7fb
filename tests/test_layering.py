"""Every module imports only what docs/architecture.md's table allows.

The table is the single statement of the layering: the values and pure stages import no SQL,
HTTP or apprise; only `store/` speaks SQL; nothing imports the CLI, and only the CLI imports
the web. Each heavy library has one home.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import ROOT

PACKAGE = ROOT / "watcher"
DOC = ROOT / "docs" / "architecture.md"


@dataclass(frozen=True)
class Layer:
    pattern: str
    allowed: frozenset[str] | None  # None: every watcher module but __main__
    libraries: frozenset[str]

    def covers(self, module: str) -> bool:
        if self.pattern.endswith("/*"):
            return module.split("/")[0] == self.pattern[:-2]
        return module == self.pattern


def _names(cell: str) -> frozenset[str]:
    cell = cell.replace("\\_", "_").strip()
    if cell in ("", "—"):
        return frozenset()
    return frozenset(n.strip().strip("`") for n in cell.split(","))


def read_table() -> list[Layer]:
    section = DOC.read_text().split("## Who may import whom", 1)[1]
    layers = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or cells[0] in ("module", "---") or set(cells[0]) <= {"-"}:
            continue
        allowed = None if cells[1].startswith("everything") else _names(cells[1])
        for pattern in _names(cells[0]):
            layers.append(Layer(pattern, allowed, _names(cells[2])))
    return layers


LAYERS = read_table()


def module_name(path: Path) -> str:
    """watcher/store/items.py → store/items; watcher/rules.py → rules."""
    rel = path.relative_to(PACKAGE).with_suffix("")
    return rel.as_posix()


def imports(path: Path) -> tuple[set[str], set[str]]:
    """(watcher modules imported, by top name; third-party top-level packages imported)."""
    tree = ast.parse(path.read_text())
    ours: set[str] = set()
    theirs: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "watcher":
                ours.update(alias.name for alias in node.names)
                continue
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "watcher":
                ours.add(parts[1])
            else:
                theirs.add(parts[0])
    return ours, theirs


MODULES = sorted(PACKAGE.rglob("*.py"))
TOP_LEVEL = {p.relative_to(PACKAGE).parts[0].removesuffix(".py") for p in MODULES}
#: The constants the package root defines (`__version__`, `DEFAULT_DATABASE_URL`): a row
#: names each it may import, as it names modules.
ROOT_NAMES = {
    target.id
    for node in ast.parse((PACKAGE / "__init__.py").read_text()).body
    if isinstance(node, ast.Assign)
    for target in node.targets
    if isinstance(target, ast.Name)
}


def layer_of(module: str) -> Layer:
    found = [layer for layer in LAYERS if layer.covers(module)]
    assert len(found) == 1, f"{module}: {len(found)} rows of docs/architecture.md cover it"
    return found[0]


def test_the_table_is_read() -> None:
    patterns = {layer.pattern for layer in LAYERS}
    assert {"types", "store/*", "cli/*", "pipeline", "outbox"} <= patterns
    assert {"__version__", "DEFAULT_DATABASE_URL"} <= ROOT_NAMES
    store = next(layer for layer in LAYERS if layer.pattern == "store/*")
    assert "sqlalchemy" in store.libraries and "httpx" not in store.libraries


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_module_imports_only_what_its_row_allows(path: Path) -> None:
    module = module_name(path)
    layer = layer_of(module)
    ours, theirs = imports(path)
    own = module.split("/")[0]
    ours.discard(own)
    everything = (TOP_LEVEL - {"__main__", "__init__"}) | ROOT_NAMES
    allowed = everything if layer.allowed is None else layer.allowed
    assert ours <= allowed, f"{module} imports {sorted(ours - allowed)}"
    homes = {lib for row in LAYERS for lib in row.libraries}
    foreign = (theirs & homes) - layer.libraries
    assert not foreign, f"{module} imports {sorted(foreign)}, whose home is elsewhere"


def test_nothing_imports_the_cli_and_only_the_cli_imports_the_web() -> None:
    for path in MODULES:
        module = module_name(path)
        ours, _ = imports(path)
        if module != "__main__" and not module.startswith("cli"):
            assert "cli" not in ours, module
            assert "web" not in ours or module.startswith("web"), module


def test_only_the_store_speaks_sql() -> None:
    users = {
        module_name(p)
        for p in MODULES
        if re.search(r"^\s*(from|import) sqlalchemy\b", p.read_text(), re.M)
    }
    assert users and all(u.startswith("store/") for u in users), users
