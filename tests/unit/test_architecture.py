"""The package's shape, checked from its imports (STYLE.md, "Habits learned from our own
tree"): no package imports another package that imports it back, and no module imports
another module's `_` name. Imports under `if TYPE_CHECKING:` are annotations only and do
not count."""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "pgferry"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _group(module: str) -> str:
    """The first level under pgferry: a package (`cdc`) or a top-level module (`errors`)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _runtime_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement, at any depth, except those under `if TYPE_CHECKING:`."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _imports() -> list[tuple[str, str, str | None]]:
    """(importing module, imported module, imported name or None) for pgferry imports."""
    out: list[tuple[str, str, str | None]] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        for node in _runtime_imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                if node.module and node.module.startswith("pgferry"):
                    out += [(module, node.module, alias.name) for alias in node.names]
            else:
                out += [(module, a.name, None) for a in node.names if a.name.startswith("pgferry")]
    return out


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            strong(v)
    return groups


def test_no_import_cycle_between_packages() -> None:
    edges: dict[str, set[str]] = defaultdict(set)
    for importer, imported, _name in _imports():
        a, b = _group(importer), _group(imported)
        if a and b and a != b:
            edges[a].add(b)
    assert _cycles(edges) == []


def test_no_module_imports_another_modules_private_name() -> None:
    private = [
        f"{importer} imports {name} from {imported}"
        for importer, imported, name in _imports()
        if name is not None and name.startswith("_") and not name.startswith("__")
    ]
    assert private == []


def test_the_check_sees_a_cycle() -> None:
    """The cycle finder itself finds one (the test above could not fail otherwise)."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


# SQL about replication slots and origins has one home (plus apply's SQL text, which
# advances the origin with each transaction it commits).
SLOT_ORIGIN_SQL = re.compile(
    r"pg_replication_slots|pg_(?:create_logical|drop)_replication_slot\s*\("
    r"|pg_replication_origin(?:_\w+\s*\(|\b)"
)
SLOT_ORIGIN_HOMES = {"pgferry/pg/replication.py", "pgferry/cdc/sqlgen.py"}
_STATEMENT = re.compile(r"^\s*(SELECT|WITH|INSERT|UPDATE|DELETE)\b|\bFROM\s+pg_replication", re.I)


def _sql_strings(tree: ast.Module) -> list[str]:
    """String constants that read as SQL statements (messages and fix hints do not)."""
    out = []
    for node in ast.walk(tree):
        is_text = isinstance(node, ast.Constant) and isinstance(node.value, str)
        if is_text and _STATEMENT.search(node.value):
            out.append(node.value)
    return out


def test_slot_and_origin_sql_live_in_their_module() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = str(path.relative_to(PACKAGE.parent))
        if rel in SLOT_ORIGIN_HOMES:
            continue
        for text in _sql_strings(ast.parse(path.read_text())):
            if SLOT_ORIGIN_SQL.search(text):
                found.append(f"{rel}: {' '.join(text.split())[:80]}")
    assert found == []


def test_the_sql_home_check_sees_slot_sql() -> None:
    tree = ast.parse('q = "SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s"')
    assert [t for t in _sql_strings(tree) if SLOT_ORIGIN_SQL.search(t)]
