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


# SQL has one home per subject (the issue "a house to live in"): a statement reading or
# setting one of these is found by pattern and must live in a module that owns it.
SQL_HOMES: dict[str, tuple[re.Pattern[str], tuple[str, ...]]] = {
    # slots and origins (plus apply's SQL text, which advances the origin per transaction)
    "slot/origin": (
        re.compile(
            r"pg_replication_slots|pg_(?:create_logical|drop)_replication_slot\s*\("
            r"|pg_replication_origin(?:_\w+\s*\(|\b)"
        ),
        ("pgferry/pg/replication.py", "pgferry/cdc/sqlgen.py"),
    ),
    # server settings: pg_settings and set_config
    "settings": (
        re.compile(r"\bpg_settings\b|\bset_config\s*\("),
        ("pgferry/pg/settings.py",),
    ),
    # what sessions are doing: activity, locks, progress, WAL and walsender statistics
    "activity": (
        re.compile(r"\bpg_stat_(?:activity|progress_\w+|replication|wal)\b|\bpg_locks\b"),
        ("pgferry/pg/activity.py", "pgferry/pg/sessions.py", "pgferry/pg/replication.py"),
    ),
    # the system catalogs of a database's objects, roles and databases
    "catalog": (
        re.compile(
            r"\bpg_(?:class|namespace|attribute|index|constraint|proc|type|depend|description"
            r"|roles|authid|database|extension|inherits|trigger|rewrite|sequence|collation"
            r"|opclass|am|largeobject_metadata|publication\w*|subscription|event_trigger"
            r"|tablespace|policy|statistic_ext|auth_members|cast|language|operator)\b"
        ),
        (
            "pgferry/catalog/",
            "pgferry/pg/",  # server facts: identity, leftover sessions, activity, slots
            "pgferry/clone/blobs.py",  # large objects' contents, copied in OID ranges
            "pgferry/demo/",  # the demo describes its own sample database
        ),
    ),
}

_STATEMENT = re.compile(
    r"^\s*\(?\s*(SELECT|WITH|INSERT|UPDATE|DELETE)\b|\bFROM\s+pg_\w+\s+\w", re.I
)


def _docstrings(tree: ast.Module) -> set[int]:
    """ids of the docstring constants (prose, not SQL)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def _sql_strings(tree: ast.Module) -> list[str]:
    """String constants and f-strings (their literal parts) that read as SQL statements;
    docstrings, messages and fix hints do not."""
    skip = _docstrings(tree)
    inside_fstring = {
        id(part)
        for node in ast.walk(tree)
        if isinstance(node, ast.JoinedStr)
        for part in node.values
    }
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            text = "".join(
                p.value if isinstance(p, ast.Constant) and isinstance(p.value, str) else "{}"
                for p in node.values
            )
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) in skip or id(node) in inside_fstring:
                continue
            text = node.value
        else:
            continue
        if _STATEMENT.search(text):
            out.append(text)
    return out


def _misplaced_sql() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = str(path.relative_to(PACKAGE.parent))
        for text in _sql_strings(ast.parse(path.read_text())):
            for subject, (pattern, homes) in SQL_HOMES.items():
                if pattern.search(text) and not rel.startswith(homes):
                    found.append(f"{subject} SQL in {rel}: {' '.join(text.split())[:80]}")
    return found


def test_sql_lives_in_the_module_that_owns_its_subject() -> None:
    assert _misplaced_sql() == []


def test_the_sql_home_check_sees_misplaced_sql() -> None:
    """Each pattern finds a statement of its subject (the test above could not fail otherwise)."""
    samples = {
        "slot/origin": 'q = "SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s"',
        "settings": 'q = "SELECT pg_catalog.set_config(%s, %s, false)"',
        "activity": 'q = f"SELECT pid FROM pg_stat_activity WHERE datname = {name}"',
        "catalog": 'q = """\n  SELECT c.oid FROM pg_catalog.pg_class c"""',
    }
    for subject, code in samples.items():
        texts = _sql_strings(ast.parse(code))
        pattern = SQL_HOMES[subject][0]
        assert [t for t in texts if pattern.search(t)], subject
    prose = ast.parse('def f():\n    """Values come from pg_settings.reset_val."""')
    assert _sql_strings(prose) == []


def _local_imports() -> list[str]:
    """pgferry imports inside functions, outside cli/ (which loads a command's modules
    only when that command runs)."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = str(path.relative_to(PACKAGE.parent))
        if rel.startswith("pgferry/cli/"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                for sub in ast.walk(node):
                    if isinstance(sub, ast.ImportFrom) and (sub.module or "").startswith("pgferry"):
                        found.append(f"{rel}:{sub.lineno} {node.name} imports {sub.module}")
    return found


def test_no_function_local_import_dodges_a_cycle() -> None:
    """A function-local import hides a dependency (and often a cycle): imports go at the top."""
    assert _local_imports() == []
