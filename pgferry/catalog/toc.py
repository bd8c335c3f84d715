"""The schema dump's table of contents: read it, and write filtered --use-list files.

`pg_restore -l` gives every entry's dump id and catalog ids in restore order;
`pg_restore -v -f -` prints, for each entry, its dependencies, name, type, schema and
owner. Together they give the dependency graph that filtering walks, so a view over an
excluded table, a comment on it or a foreign key to it go with it.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pgferry.errors import StepFailed

# Descriptions pg_dump uses for large-object metadata across versions.
LARGE_OBJECT_DESCS = frozenset({"BLOB", "LARGE OBJECT", "BLOB METADATA"})
LARGE_OBJECT_DATA_DESCS = frozenset({"BLOBS", "LARGE OBJECTS"})
# Entries whose object is the thing they decorate (they follow it in or out).
DECORATION_DESCS = frozenset({"COMMENT", "ACL", "SECURITY LABEL"})

_LIST_LINE = re.compile(r"^(\d+);\s+(\d+)\s+(\d+)\s+(.*)$")
_ENTRY = re.compile(r"^-- TOC entry (\d+) \(class (\d+) OID (\d+)\)$")
_DEPS = re.compile(r"^-- Dependencies: ([\d ]+)$")
_NAME = re.compile(
    r"^-- (?:Data for )?Name: (.*); Type: ([A-Z ]+); Schema: (.*?); Owner: (.*?)"
    r"(?:; Tablespace: .*)?$"
)


@dataclass(frozen=True)
class TocEntry:
    dump_id: int
    catalog_oid: int  # the catalog the object lives in (pg_class, pg_constraint...), or 0
    oid: int
    desc: str  # TABLE, INDEX, FK CONSTRAINT, COMMENT...
    namespace: str | None
    tag: str
    owner: str | None
    deps: tuple[int, ...]

    def describe(self) -> str:
        where = f"{self.namespace}." if self.namespace else ""
        return f"{self.desc} {where}{self.tag}"


def parse_list(text: str) -> list[tuple[int, int, int, str]]:
    """`pg_restore -l` lines -> (dump id, catalog oid, oid, rest of line), in order."""
    out = []
    for line in text.splitlines():
        m = _LIST_LINE.match(line)
        if m:
            out.append((int(m.group(1)), int(m.group(2)), int(m.group(3)), m.group(4)))
    return out


def parse_verbose(lines: Iterable[str]) -> dict[int, tuple[tuple[int, ...], str, str, str, str]]:
    """`pg_restore -v -f -` output -> dump id -> (deps, tag, desc, schema, owner)."""
    result: dict[int, tuple[tuple[int, ...], str, str, str, str]] = {}
    current: int | None = None
    deps: tuple[int, ...] = ()
    for raw in lines:
        if not raw.startswith("-- "):
            continue
        line = raw.rstrip("\n")
        m = _ENTRY.match(line)
        if m:
            current, deps = int(m.group(1)), ()
            continue
        if current is None:
            continue
        m = _DEPS.match(line)
        if m:
            deps = tuple(int(x) for x in m.group(1).split())
            continue
        m = _NAME.match(line)
        if m:
            result[current] = (deps, m.group(1), m.group(2), m.group(3), m.group(4))
            current = None
    return result


def merge(
    listing: list[tuple[int, int, int, str]],
    verbose: dict[int, tuple[tuple[int, ...], str, str, str, str]],
) -> list[TocEntry]:
    entries = []
    for dump_id, catalog_oid, oid, rest in listing:
        info = verbose.get(dump_id)
        if info is None:
            # Special entries (ENCODING, STDSTRINGS, SEARCHPATH) print no header.
            desc = rest.split(" ", 1)[0]
            entries.append(TocEntry(dump_id, catalog_oid, oid, desc, None, rest, None, ()))
            continue
        deps, tag, desc, schema, owner = info
        entries.append(
            TocEntry(
                dump_id=dump_id,
                catalog_oid=catalog_oid,
                oid=oid,
                desc=desc,
                namespace=None if schema == "-" else schema,
                tag=tag,
                owner=owner or None,
                deps=deps,
            )
        )
    return entries


def read_toc(pg_restore: Path, dump_file: Path) -> list[TocEntry]:
    """Both pg_restore passes over a custom-format dump, merged."""
    listing = _run([str(pg_restore), "-l", str(dump_file)])
    proc = subprocess.Popen(
        [str(pg_restore), "-v", "-f", "-", str(dump_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
    )
    assert proc.stdout is not None
    verbose = parse_verbose(proc.stdout)
    _, err = proc.communicate()
    if proc.returncode != 0:
        raise StepFailed(f"pg_restore could not read {dump_file}: {err.strip()[-500:]}")
    return merge(parse_list(listing), verbose)


def _run(argv: list[str]) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, errors="replace", check=False)
    if proc.returncode != 0:
        raise StepFailed(f"{Path(argv[0]).name} failed: {proc.stderr.strip()[-500:]}")
    return proc.stdout


def render_use_list(entries: Iterable[TocEntry], keep: set[int]) -> str:
    """A --use-list file: kept entries as lines, the others commented out, order kept."""
    lines = []
    for e in entries:
        text = f"{e.dump_id}; {e.catalog_oid} {e.oid} {e.desc} {e.namespace or '-'} {e.tag}"
        text = text.replace("\n", " ")
        lines.append(text if e.dump_id in keep else ";" + text)
    return "\n".join(lines) + "\n"
