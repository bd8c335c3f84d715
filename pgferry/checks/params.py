"""`pgferry params`: the source's and the target's settings side by side.

Values come from pg_settings.reset_val: what a new session of this role in this database
starts with (server configuration, ALTER SYSTEM, ALTER DATABASE/ROLE ... SET), without
our own session's SETs. Values with units are normalised (bytes, seconds) so that
"16384 8kB" and "128MB" read the same; restart requirements come from pg_settings.context.

Verdicts: a different encoding, collation, ctype or locale provider is a FAIL (text sorts,
compares or converts differently: indexes, ORDER BY, UNIQUE, upper()); other settings that
change what applications see (TimeZone, DateStyle, search_path, a preload library the
source has and the target lacks, another major version, ...) are WARN; tuning differences
are shown without a verdict.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import psycopg

from pgferry.catalog.facts import extension_names
from pgferry.catalog.filters import Filters
from pgferry.catalog.inspect import COLLATION_SQL, COLLATIONS_USED_SQL, database_locale_sql
from pgferry.checks.report import Report
from pgferry.pg.conninfo import ConnInfo
from pgferry.pg.profiles import READ_ONLY
from pgferry.pg.settings import SETTINGS_REPORT_SQL


def _words(text: str) -> list[str]:
    return text.split()


class Group(StrEnum):
    MEMORY = "memory"
    WAL = "WAL / replication"
    CHECKPOINTS = "checkpoints"
    PLANNER = "planner / query tuning"
    AUTOVACUUM = "autovacuum / vacuum"
    CONNECTIONS = "connections"
    PARALLELISM = "parallelism"
    LOCALE = "locale / encoding / collation"
    LOGGING = "logging / statistics"
    PRELOAD = "extensions preload"
    OTHER = "other"


_GROUP_BY_NAME: dict[str, Group] = {
    "effective_cache_size": Group.MEMORY,
    "logical_decoding_work_mem": Group.WAL,
    "max_wal_size": Group.CHECKPOINTS,
    "min_wal_size": Group.CHECKPOINTS,
    "max_worker_processes": Group.PARALLELISM,
    "max_parallel_workers": Group.PARALLELISM,
    "max_parallel_workers_per_gather": Group.PARALLELISM,
    "max_parallel_maintenance_workers": Group.PARALLELISM,
    "parallel_setup_cost": Group.PARALLELISM,
    "parallel_tuple_cost": Group.PARALLELISM,
    "parallel_leader_participation": Group.PARALLELISM,
    "min_parallel_table_scan_size": Group.PARALLELISM,
    "min_parallel_index_scan_size": Group.PARALLELISM,
    "force_parallel_mode": Group.PARALLELISM,
    "debug_parallel_query": Group.PARALLELISM,
    "server_encoding": Group.LOCALE,
    "lc_collate": Group.LOCALE,
    "lc_ctype": Group.LOCALE,
    "max_prepared_transactions": Group.CONNECTIONS,
}

# pg_settings.category prefixes (English; the names above catch what matters most when
# the server speaks another language).
_GROUP_BY_CATEGORY: tuple[tuple[str, Group], ...] = (
    ("Resource Usage / Memory", Group.MEMORY),
    ("Resource Usage / Cost-Based Vacuum Delay", Group.AUTOVACUUM),
    ("Write-Ahead Log / Checkpoints", Group.CHECKPOINTS),
    ("Write-Ahead Log", Group.WAL),
    ("Replication", Group.WAL),
    ("Query Tuning", Group.PLANNER),
    ("Autovacuum", Group.AUTOVACUUM),
    ("Connections and Authentication", Group.CONNECTIONS),
    ("Client Connection Defaults / Locale and Formatting", Group.LOCALE),
    ("Client Connection Defaults / Shared Library Preloading", Group.PRELOAD),
    ("Reporting and Logging", Group.LOGGING),
    ("Statistics", Group.LOGGING),
)


def group_of(name: str, category: str) -> Group:
    """The report group of a setting: by name first, then by pg_settings.category."""
    if name in _GROUP_BY_NAME:
        return _GROUP_BY_NAME[name]
    if name.endswith("preload_libraries"):
        return Group.PRELOAD
    if name.startswith(("autovacuum", "vacuum_")):
        return Group.AUTOVACUUM
    if name.startswith("enable_"):
        return Group.PLANNER
    for prefix, group in _GROUP_BY_CATEGORY:
        if category.startswith(prefix):
            return group
    return Group.OTHER


# Settings that differ between any two servers for reasons of no interest (paths, ports,
# the session's own state, values derived from others). Shown only with --all.
NOISE: frozenset[str] = frozenset(
    _words(
        """
        application_name client_encoding transaction_isolation transaction_read_only
        transaction_deferrable is_superuser session_authorization data_directory config_file
        hba_file ident_file external_pid_file port listen_addresses unix_socket_directories
        unix_socket_group cluster_name server_version server_version_num in_hot_standby
        shared_memory_size shared_memory_size_in_huge_pages log_directory log_filename
        ssl_cert_file ssl_key_file ssl_ca_file ssl_crl_file ssl_crl_dir ssl_dh_params_file
        krb_server_keyfile bonjour_name syslog_ident event_source primary_conninfo
        primary_slot_name promote_trigger_file restore_command archive_cleanup_command
        recovery_end_command recovery_target recovery_target_lsn recovery_target_name
        recovery_target_time recovery_target_timeline recovery_target_xid
        recovery_target_action recovery_target_inclusive
        """
    )
)

# Values that may hold credentials (a password in a conninfo or a command): compared,
# never shown.
SECRET: frozenset[str] = frozenset(
    _words(
        """
        primary_conninfo archive_command restore_command archive_cleanup_command
        recovery_end_command ssl_passphrase_command
        """
    )
)

# The settings worth seeing even when equal (pgcopydb's helper compared these 58, plus
# the ones that change behaviour, below).
KEY_SETTINGS: frozenset[str] = frozenset(
    _words(
        """
        effective_io_concurrency effective_cache_size huge_pages maintenance_io_concurrency
        maintenance_work_mem max_parallel_maintenance_workers max_parallel_workers
        max_parallel_workers_per_gather max_worker_processes shared_buffers work_mem
        deadlock_timeout default_statistics_target random_page_cost seq_page_cost
        cpu_tuple_cost cpu_index_tuple_cost cpu_operator_cost enable_hashjoin enable_mergejoin
        enable_nestloop enable_seqscan enable_indexscan enable_indexonlyscan enable_bitmapscan
        enable_partitionwise_join enable_partitionwise_aggregate from_collapse_limit
        join_collapse_limit jit jit_above_cost jit_inline_above_cost jit_optimize_above_cost
        max_slot_wal_keep_size max_wal_size min_wal_size wal_buffers wal_level
        checkpoint_completion_target checkpoint_timeout max_connections hot_standby_feedback
        max_logical_replication_workers max_replication_slots max_sync_workers_per_subscription
        max_wal_senders autovacuum_vacuum_scale_factor autovacuum_analyze_scale_factor
        autovacuum_max_workers autovacuum_naptime autovacuum_vacuum_cost_delay
        autovacuum_vacuum_cost_limit track_io_timing log_lock_waits log_min_duration_statement
        shared_preload_libraries temp_buffers hash_mem_multiplier wal_sender_timeout
        max_locks_per_transaction max_prepared_transactions
        """
    )
)

# Settings whose difference changes what applications see, and how.
BEHAVIOUR: Mapping[str, str] = {
    "TimeZone": "timestamptz values are shown and parsed in another time zone",
    "DateStyle": "dates are shown and parsed in another format",
    "IntervalStyle": "intervals are shown in another format",
    "standard_conforming_strings": "backslashes in '...' literals mean something else",
    "search_path": "unqualified names resolve to other schemas",
    "default_transaction_isolation": "transactions run at another isolation level",
    "bytea_output": "bytea values are shown in another format",
    "extra_float_digits": "floating-point values are shown with other digits",
    "integer_datetimes": "timestamps are stored with another precision",
    "max_identifier_length": "longer names are truncated differently",
    "lc_monetary": "money values and to_char() output differ",
    "lc_numeric": "to_char() number output differs",
    "lc_time": "to_char() day and month names differ",
    "default_text_search_config": "full-text search uses another configuration",
    "timezone_abbreviations": "time zone abbreviations parse differently",
    "xmloption": "XML values parse differently",
    "array_nulls": "NULL in array literals means something else",
    "backslash_quote": "\\' in literals is accepted or rejected differently",
    "transform_null_equals": "x = NULL means something else",
    "default_transaction_read_only": "transactions are read-only or not by default",
    "default_transaction_deferrable": "serializable read-only transactions wait differently",
    "statement_timeout": "statements are cancelled after another time",
    "lock_timeout": "lock waits are cancelled after another time",
    "idle_in_transaction_session_timeout": "idle transactions are ended after another time",
    "idle_session_timeout": "idle sessions are ended after another time",
    "session_replication_role": "triggers and rules fire differently",
    "row_security": "row-level security applies differently",
    "password_encryption": "new passwords are hashed differently (md5 / scram-sha-256)",
    "synchronous_commit": "commits are acknowledged with other durability",
}

# Settings whose target value below the source's can make applications fail.
_CAPACITY: Mapping[str, str] = {
    "max_connections": "the application's connections may not fit (too many clients)",
    "max_prepared_transactions": "PREPARE TRANSACTION may fail (two-phase commit)",
    "max_locks_per_transaction": "transactions touching many tables may run out of locks",
}

# A preload list is a set (order rarely matters, and only between libraries of one kind).
_LISTS = frozenset(
    {"shared_preload_libraries", "session_preload_libraries", "local_preload_libraries"}
)

_UTC = frozenset(
    _words(
        """
        utc etc/utc uct etc/uct universal etc/universal zulu etc/zulu gmt etc/gmt gmt0 etc/gmt0
        gmt+0 gmt-0 etc/gmt+0 etc/gmt-0 greenwich etc/greenwich
        """
    )
)

_BYTE_UNITS = {"B": 1, "kB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}
_TIME_UNITS = {"us": 0.000001, "ms": 0.001, "s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_UNIT = re.compile(r"^(\d*)\s*([a-zA-Z]+)$")


@dataclass(frozen=True)
class Normalized:
    """A value with a unit, in bytes or seconds; `value` None when it has no unit."""

    value: float | None
    kind: str | None  # "bytes", "seconds" or None


def normalize(setting: str, unit: str | None) -> Normalized:
    """`setting` × `unit` in bytes (8kB, kB, MB, B) or seconds (ms, s, min)."""
    if not unit:
        return Normalized(None, None)
    m = _UNIT.match(unit.strip())
    try:
        number = float(setting)
    except ValueError:
        return Normalized(None, None)
    if not m:
        return Normalized(None, None)
    factor = int(m.group(1) or 1)
    base = m.group(2)
    if base in _BYTE_UNITS:
        return Normalized(number * factor * _BYTE_UNITS[base], "bytes")
    if base in _TIME_UNITS:
        return Normalized(number * factor * _TIME_UNITS[base], "seconds")
    return Normalized(None, None)


def format_bytes(n: float) -> str:
    """Exact, PostgreSQL-style: 8192 -> '8kB', 134217728 -> '128MB', 1000 -> '1000B'."""
    if n != int(n):
        return f"{n}B"
    value = int(n)
    for unit in ("TB", "GB", "MB", "kB"):
        size = _BYTE_UNITS[unit]
        if value and value % size == 0:
            return f"{value // size}{unit}"
    return f"{value}B"


def format_seconds(s: float) -> str:
    """Exact, PostgreSQL-style: 0.2 -> '200ms', 300 -> '5min', 3600 -> '1h'."""
    if s == 0:
        return "0"
    ms = round(s * 1000, 6)
    if ms != int(ms) or abs(ms) < 1000 or ms % 1000:
        text = f"{ms:.6f}".rstrip("0").rstrip(".")
        return f"{text}ms"
    whole = int(ms // 1000)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if whole % size == 0:
            return f"{whole // size}{unit}"
    return f"{whole}s"


def display_value(name: str, setting: str, unit: str | None) -> str:
    """What the report shows: normalised units, secrets hidden, -1 and friends as they are."""
    if name in SECRET:
        return "(set)" if setting else "(empty)"
    norm = normalize(setting, unit)
    if norm.value is None or norm.value < 0:
        return setting if setting != "" else "''"
    if norm.kind == "bytes":
        return format_bytes(norm.value)
    return format_seconds(norm.value)


def _split_list(value: str) -> frozenset[str]:
    return frozenset(p.strip().strip('"') for p in value.split(",") if p.strip())


def normalize_locale(name: str) -> str:
    """en_US.UTF-8 and en_US.utf8 name the same locale."""
    base, dot, codeset = name.partition(".")
    if not dot:
        return name
    codeset, at, modifier = codeset.partition("@")
    codeset = codeset.lower().replace("-", "").replace("_", "")
    return f"{base}.{codeset}{at}{modifier}"


def same_value(name: str, a: str, b: str, unit: str | None = None) -> bool:
    """Equal for the server: units normalised, lists as sets, UTC aliases, locale names."""
    if a == b:
        return True
    if name in _LISTS:
        return _split_list(a) == _split_list(b)
    if name == "search_path":  # order matters, spaces do not
        return [x.strip() for x in a.split(",")] == [x.strip() for x in b.split(",")]
    if name == "TimeZone" or name == "log_timezone":
        la, lb = a.lower(), b.lower()
        return la == lb or (la in _UTC and lb in _UTC)
    if name in ("lc_collate", "lc_ctype", "lc_monetary", "lc_numeric", "lc_time", "lc_messages"):
        return normalize_locale(a) == normalize_locale(b)
    na, nb = normalize(a, unit), normalize(b, unit)
    if na.value is not None and nb.value is not None:
        return na.value == nb.value
    try:
        return float(a) == float(b)
    except ValueError:
        return a.lower() == b.lower() if name in ("DateStyle", "IntervalStyle") else False


def direction(a: str, b: str, unit: str | None) -> str | None:
    """'lower' / 'higher': the target's numeric value against the source's."""
    na, nb = normalize(a, unit), normalize(b, unit)
    try:
        x = na.value if na.value is not None else float(a)
        y = nb.value if nb.value is not None else float(b)
    except ValueError:
        return None
    if x is None or y is None or x == y:
        return None
    return "lower" if y < x else "higher"


def restart_label(context: str) -> str:
    """How a change takes effect, from pg_settings.context."""
    return {
        "postmaster": "restart",
        "sighup": "reload",
        "internal": "initdb",
        "backend": "new session",
        "superuser-backend": "new session",
    }.get(context, "SET")


# -- what is read from each server ---------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    name: str
    value: str  # pg_settings.reset_val
    unit: str | None
    vartype: str
    context: str
    category: str
    source: str


@dataclass(frozen=True)
class DatabaseLocale:
    """The database's encoding and default collation."""

    encoding: str
    collate: str
    ctype: str
    provider: str  # libc, icu, builtin
    icu_locale: str | None
    collversion: str | None  # recorded when the database was created / refreshed
    actual_version: str | None  # what the library provides now


@dataclass(frozen=True)
class CollationUse:
    """A non-default collation used by columns (source), or its namesake (target)."""

    schema: str
    name: str
    provider: str
    version: str | None


@dataclass(frozen=True)
class ServerFacts:
    version_num: int
    version: str
    settings: Mapping[str, Setting]
    database: DatabaseLocale
    extensions: frozenset[str]
    collations: tuple[CollationUse, ...] = ()


_PROVIDERS = {"c": "libc", "i": "icu", "b": "builtin", "d": "default"}


def read_facts(conn: psycopg.Connection[Any], filters: Filters | None = None) -> ServerFacts:
    """Settings, version, database locale and extensions of one server.

    With `filters` (the source), also the non-default collations its columns use.
    """
    version_num = conn.info.server_version
    version = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
    settings = {
        r[0]: Setting(r[0], r[1] or "", r[2], r[3], r[4], r[5] or "", r[6] or "")
        for r in conn.execute(SETTINGS_REPORT_SQL)
    }
    row = conn.execute(database_locale_sql(version_num)).fetchone()
    assert row is not None
    database = DatabaseLocale(
        encoding=row[0],
        collate=row[1],
        ctype=row[2],
        provider=_PROVIDERS.get(row[3], row[3]),
        icu_locale=row[4],
        collversion=row[5],
        actual_version=row[6],
    )
    extensions = extension_names(conn)
    collations: tuple[CollationUse, ...] = ()
    if filters is not None:
        rows = conn.execute(
            COLLATIONS_USED_SQL,
            {
                "excluded": sorted(filters.exclude_schema),
                "only": sorted(filters.include_only_schema),
            },
        ).fetchall()
        collations = tuple(CollationUse(r[0], r[1], _PROVIDERS.get(r[2], r[2]), r[3]) for r in rows)
    return ServerFacts(version_num, version, settings, database, extensions, collations)


def read_collations(
    conn: psycopg.Connection[Any], wanted: Iterable[CollationUse]
) -> dict[tuple[str, str], CollationUse]:
    """The target's collations with the same schema and name as `wanted`."""
    wanted = list(wanted)
    if not wanted:
        return {}
    rows = conn.execute(
        COLLATION_SQL, ([c.schema for c in wanted], [c.name for c in wanted])
    ).fetchall()
    return {(r[0], r[1]): CollationUse(r[0], r[1], _PROVIDERS.get(r[2], r[2]), r[3]) for r in rows}


# -- the comparison ------------------------------------------------------------------------


@dataclass(frozen=True)
class ParamRow:
    """One setting on both sides."""

    name: str
    group: Group
    source: Setting | None
    target: Setting | None
    differs: bool
    direction: str | None  # the target's value against the source's: lower / higher
    behaviour: str | None  # why a difference matters to applications
    key: bool  # shown even when equal

    @property
    def unit(self) -> str | None:
        return (self.source or self.target).unit  # type: ignore[union-attr]

    @property
    def restart(self) -> str:
        s = self.target or self.source
        return restart_label(s.context) if s else ""

    def shown(self, side: Setting | None) -> str:
        if side is None:
            return "n/a"
        return display_value(self.name, side.value, side.unit)

    def to_json(self) -> dict[str, Any]:
        def side(s: Setting | None) -> dict[str, Any] | None:
            if s is None:
                return None
            norm = normalize(s.value, s.unit)
            return {
                "value": "(hidden)" if self.name in SECRET else s.value,
                "unit": s.unit,
                "display": self.shown(s),
                "normalized": norm.value if self.name not in SECRET else None,
                "normalized_unit": norm.kind,
                "context": s.context,
                "source": s.source,
            }

        return {
            "name": self.name,
            "group": str(self.group),
            "differs": self.differs,
            "direction": self.direction,
            "restart": self.restart,
            "behaviour": self.behaviour,
            "source": side(self.source),
            "target": side(self.target),
        }


@dataclass
class ParamsComparison:
    source: ServerFacts
    target: ServerFacts
    rows: list[ParamRow]
    report: Report
    source_label: str = ""
    target_label: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def visible(self, show_all: bool) -> list[ParamRow]:
        """Rows for the report: every one with --all, else differing or key ones."""
        if show_all:
            return self.rows
        return [
            r
            for r in self.rows
            if (r.differs and r.name not in NOISE) or r.key or r.behaviour is not None
        ]

    def exit_code(self) -> int:
        return self.report.exit_code()

    def to_json(self, show_all: bool) -> dict[str, Any]:
        def facts(f: ServerFacts, label: str) -> dict[str, Any]:
            d = f.database
            return {
                "server": label,
                "version": f.version,
                "version_num": f.version_num,
                "encoding": d.encoding,
                "lc_collate": d.collate,
                "lc_ctype": d.ctype,
                "locale_provider": d.provider,
                "icu_locale": d.icu_locale,
                "collation_version": d.collversion,
                "collation_actual_version": d.actual_version,
            }

        return {
            "source": facts(self.source, self.source_label),
            "target": facts(self.target, self.target_label),
            "settings": [r.to_json() for r in self.visible(show_all)],
            "differences": sum(1 for r in self.rows if r.differs and r.name not in NOISE),
            **self.report.to_json(),
        }


def compare_settings(source: ServerFacts, target: ServerFacts) -> list[ParamRow]:
    """Every setting either side has, grouped and flagged; pure."""
    rows = []
    for name in sorted(set(source.settings) | set(target.settings), key=str.lower):
        s, t = source.settings.get(name), target.settings.get(name)
        unit = (s or t).unit  # type: ignore[union-attr]
        if s is None or t is None:
            differs, way = True, None
        else:
            differs = not same_value(name, s.value, t.value, unit)
            way = direction(s.value, t.value, unit) if differs else None
        category = (s or t).category  # type: ignore[union-attr]
        rows.append(
            ParamRow(
                name=name,
                group=group_of(name, category),
                source=s,
                target=t,
                differs=differs,
                direction=way,
                behaviour=BEHAVIOUR.get(name),
                key=name in KEY_SETTINGS,
            )
        )
    return rows


def check_behaviour(
    report: Report,
    source: ServerFacts,
    target: ServerFacts,
    rows: list[ParamRow],
    filters: Filters,
    target_collations: Mapping[tuple[str, str], CollationUse],
) -> None:
    """Add the PASS/WARN/FAIL checks: locale (FAIL), behaviour and capacity (WARN)."""
    _check_version(report, source, target)
    _check_locale(report, source.database, target.database)
    _check_collations(report, source.collations, target_collations)
    by_name = {r.name: r for r in rows}
    changed = [r for r in rows if r.behaviour and r.differs]
    for r in changed:
        report.warn(
            f"setting.{r.name}",
            f"{r.name} differs: source {r.shown(r.source)}, target {r.shown(r.target)}: "
            f"{r.behaviour}",
            fix=_set_fix(r),
        )
    same = [r.name for r in rows if r.behaviour and not r.differs]
    if same:
        report.ok("settings.behaviour", f"{len(same)} behaviour settings are the same")
    for name, why in _CAPACITY.items():
        cap = by_name.get(name)
        if cap and cap.direction == "lower":
            report.warn(
                f"setting.{name}",
                f"{name} is lower on the target ({cap.shown(cap.target)} < "
                f"{cap.shown(cap.source)}): {why}",
                fix=f"raise {name} on the target (needs a {cap.restart})",
            )
    _check_preload(report, by_name.get("shared_preload_libraries"), source, filters)


def _set_fix(r: ParamRow) -> str:
    if r.source is None:
        return f"{r.name} exists only on the target (another version, or hidden from this role)"
    if r.target is None:
        return (
            f"{r.name} is not on the target (another version, or hidden from this role: "
            "grant it pg_read_all_settings)"
        )
    value = r.source.value
    if r.name not in ("search_path", *_LISTS):
        value = "'" + value.replace("'", "''") + "'"
    return (
        f"if applications rely on the source's value: ALTER DATABASE ... SET {r.name} = "
        f"{value} on the target (or set it in postgresql.conf)"
    )


def _check_version(report: Report, source: ServerFacts, target: ServerFacts) -> None:
    s_major, t_major = source.version_num // 10000, target.version_num // 10000
    text = f"source PostgreSQL {source.version}, target PostgreSQL {target.version}"
    if s_major == t_major:
        report.ok("server.version", text)
    elif t_major < s_major:
        report.warn(
            "server.version",
            f"{text}: the target is older; the dump may not restore and features the "
            "application uses may be missing",
            fix="use a target at least as new as the source",
        )
    else:
        report.warn(
            "server.version",
            f"{text}: behaviour can change between major versions",
            fix=f"read the migration notes of the release notes of {s_major + 1} to {t_major}",
        )


def _check_locale(report: Report, s: DatabaseLocale, t: DatabaseLocale) -> None:
    if s.encoding != t.encoding:
        report.fail(
            "locale.encoding",
            f"server encoding differs: source {s.encoding}, target {t.encoding}: text "
            "converts differently, and some values may not load at all",
            fix=f"create the target database with ENCODING '{s.encoding}' (and TEMPLATE template0)",
        )
    else:
        report.ok("locale.encoding", f"encoding {s.encoding} on both")
    for check, label, a, b in (
        ("locale.lc_collate", "LC_COLLATE", s.collate, t.collate),
        ("locale.lc_ctype", "LC_CTYPE", s.ctype, t.ctype),
    ):
        if normalize_locale(a) != normalize_locale(b):
            report.fail(
                check,
                f"{label} differs: source {a}, target {b}: text sorts and compares "
                "differently (ORDER BY, indexes, UNIQUE, upper/lower)",
                fix=f"create the target database with {label} '{a}' (TEMPLATE template0)",
            )
        else:
            report.ok(check, f"{label} {a} on both")
    if (s.provider, s.icu_locale) != (t.provider, t.icu_locale):
        shown_s = s.provider + (f" ({s.icu_locale})" if s.icu_locale else "")
        shown_t = t.provider + (f" ({t.icu_locale})" if t.icu_locale else "")
        report.fail(
            "locale.provider",
            f"collation provider differs: source {shown_s}, target {shown_t}: text "
            "sorts differently",
            fix="create the target database with the source's LOCALE_PROVIDER and locale",
        )
    else:
        report.ok("locale.provider", f"collation provider {s.provider} on both")
    if s.actual_version and t.actual_version and s.actual_version != t.actual_version:
        report.warn(
            "locale.collation_version",
            f"the default collation's library version differs: source {s.actual_version}, "
            f"target {t.actual_version}: some strings may sort in another order (the "
            "target's indexes are built there, so they are consistent)",
            fix="check the application's ORDER BY results on the target",
        )
    if t.collversion and t.actual_version and t.collversion != t.actual_version:
        report.warn(
            "locale.target_collation_version",
            f"the target database records collation version {t.collversion} but its "
            f"library provides {t.actual_version}",
            fix="ALTER DATABASE ... REFRESH COLLATION VERSION on the target after "
            "reindexing what depends on it",
        )


def _check_collations(
    report: Report,
    used: tuple[CollationUse, ...],
    target: Mapping[tuple[str, str], CollationUse],
) -> None:
    if not used:
        return
    missing = [c for c in used if (c.schema, c.name) not in target and c.schema == "pg_catalog"]
    if missing:
        names = ", ".join(f"{c.schema}.{c.name}" for c in missing[:10])
        report.fail(
            "locale.collations",
            f"{len(missing)} collation(s) the source's columns use do not exist on the "
            f"target: {names}: creating those tables will fail",
            fix="install the locales on the target's operating system (or use ICU "
            "collations), then pg_import_system_collations",
        )
    changed = [
        (c, target[(c.schema, c.name)])
        for c in used
        if (c.schema, c.name) in target
        and c.version
        and target[(c.schema, c.name)].version
        and c.version != target[(c.schema, c.name)].version
    ]
    if changed:
        names = ", ".join(f"{c.schema}.{c.name} ({c.version} -> {t.version})" for c, t in changed)
        report.warn(
            "locale.collation_versions",
            f"collations used by columns have another library version on the target: "
            f"{names}: some strings may sort differently",
        )
    if not missing and not changed:
        report.ok(
            "locale.collations",
            f"the {len(used)} non-default collation(s) the source's columns use match",
        )


def _check_preload(
    report: Report, row: ParamRow | None, source: ServerFacts, filters: Filters
) -> None:
    if row is None or row.source is None or row.target is None:
        side = "source" if row is None or row.source is None else "target"
        report.warn(
            "preload.libraries",
            f"shared_preload_libraries is not readable on the {side}",
            fix=f"grant pg_read_all_settings to the {side} role",
        )
        return
    src = _split_list(row.source.value)
    tgt = _split_list(row.target.value)
    missing = sorted(src - tgt)
    if not missing:
        report.ok("preload.libraries", "the target preloads every library the source does")
        return
    used = [m for m in missing if m in source.extensions and filters.keeps_extension(m)]
    others = [m for m in missing if m not in used]
    if used:
        report.warn(
            "preload.libraries",
            f"shared_preload_libraries on the target lacks {', '.join(used)}, which the "
            "source's extensions of the same name need: they will not work there",
            fix="add them to the target's shared_preload_libraries (needs a restart)",
        )
    if others:
        report.warn(
            "preload.other_libraries",
            f"the source also preloads {', '.join(others)}, the target does not",
            fix="add them to the target's shared_preload_libraries if the application "
            "relies on them (needs a restart)",
        )


def compare_params(source: ConnInfo, target: ConnInfo, filters: Filters) -> ParamsComparison:
    """Read both servers (read-only, with timeouts) and compare them."""
    with source.connect("pgferry params", settings=READ_ONLY) as conn:
        src = read_facts(conn, filters)
    with target.connect("pgferry params", settings=READ_ONLY) as conn:
        tgt = read_facts(conn)
        tgt_collations = read_collations(conn, src.collations)
    rows = compare_settings(src, tgt)
    report = Report("Settings: source vs target")
    report.facts["source"] = f"{source.short()} PostgreSQL {src.version}"
    report.facts["target"] = f"{target.short()} PostgreSQL {tgt.version}"
    check_behaviour(report, src, tgt, rows, filters, tgt_collations)
    return ParamsComparison(src, tgt, rows, report, source.short(), target.short())
