"""Connection strings, secrets and connecting.

A `ConnInfo` holds what the user gave (URI or key=value string, with every libpq
parameter), keeps the password apart, and hands out: a masked string for display, a
password-free string for child processes' argv (the password goes in their environment),
and connections with pgferry's session settings.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from pgferry.errors import ConnectionFailed, InputError, PgferryError
from pgferry.pg.secrets import mask_text
from pgferry.pg.settings import set_settings

# Added unless the user set them: detect a dead peer during hours-long COPYs.
_KEEPALIVE_DEFAULTS = {
    "keepalives": "1",
    "keepalives_idle": "10",
    "keepalives_interval": "10",
    "keepalives_count": "6",
}
_DEFAULT_CONNECT_TIMEOUT = "10"

# libpq quotes the offending part of a connection string it cannot parse; that part may
# hold the password (`postgresql//user:PW@host`), so it is never shown.
_QUOTED = re.compile(r'"([^"]*)"')


def scrub(text: str, secrets: tuple[str, ...] = ()) -> str:
    """Remove passwords from text that may contain connection strings or known secrets."""
    return mask_text(text, secrets)


def parse_error_detail(message: str) -> str:
    """libpq's complaint about a connection string, without the fragment it quotes."""
    first = message.strip().splitlines()[0] if message.strip() else "cannot parse it"
    return _QUOTED.sub(lambda m: m.group(0) if m.group(1) in ("=", "") else '"…"', first)


@dataclass(frozen=True)
class ConnInfo:
    """A parsed connection string for one side of the migration."""

    role: str  # "source" or "target": used in messages
    params: Mapping[str, str]  # every libpq parameter except the password
    password: str | None = field(default=None, repr=False)
    tag: str | None = None  # marks the sessions of one work directory (application_name)

    @classmethod
    def parse(cls, text: str, role: str) -> ConnInfo:
        """Parse a URI or key=value string; errors never echo the string."""
        if not text or not text.strip():
            raise InputError(
                f"no {role} connection string given",
                fix=f"pass --{role} URI or set PGCOPYDB_{role.upper()}_PGURI",
            )
        try:
            params = conninfo_to_dict(text)
        except psycopg.ProgrammingError as exc:
            hint = ""
            if re.match(r"postgres(?:ql)?:?/?/?", text.strip()) and "://" not in text:
                hint = "; the URI's scheme must be written postgresql://"
            raise InputError(
                f"invalid {role} connection string: {parse_error_detail(str(exc))}{hint}",
                fix="use a libpq URI (postgresql://user@host:5432/dbname) or key=value string",
            ) from None
        values = {k: str(v) for k, v in params.items() if v is not None}
        password = values.pop("password", None)
        return cls(role=role, params=values, password=password)

    # -- what the connection points at ------------------------------------------------
    @property
    def dbname(self) -> str:
        return self.params.get("dbname") or os.environ.get("PGDATABASE") or self.user

    @property
    def user(self) -> str:
        import getpass

        return self.params.get("user") or os.environ.get("PGUSER") or getpass.getuser()

    @property
    def host(self) -> str:
        return (
            self.params.get("host")
            or self.params.get("hostaddr")
            or os.environ.get("PGHOST", "localhost")
        )

    @property
    def port(self) -> str:
        return self.params.get("port") or os.environ.get("PGPORT", "5432")

    def with_password(self, password: str) -> ConnInfo:
        return ConnInfo(role=self.role, params=self.params, password=password, tag=self.tag)

    def with_tag(self, tag: str) -> ConnInfo:
        """Sessions opened through the result carry `tag` in their application_name."""
        return ConnInfo(role=self.role, params=self.params, password=self.password, tag=tag)

    def application_name(self, purpose: str) -> str:
        name = f"pgferry:{self.tag} {purpose}" if self.tag else purpose
        return name[:63]

    # -- renderings ---------------------------------------------------------------------
    def masked(self) -> str:
        """For display and logs: every parameter, the password as ****."""
        shown = make_conninfo("", **dict(self.params))
        if self.password is not None:
            shown += " password=****"
        return shown

    def short(self) -> str:
        """user@host:port/dbname, for one-line messages."""
        return f"{self.user}@{self.host}:{self.port}/{self.dbname}"

    def dsn_without_password(self, **overrides: str) -> str:
        """For a child process's argv (pg_dump, pg_restore): no password in it."""
        params = dict(self.params)
        params.update(overrides)
        return make_conninfo("", **params)

    def child_env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """Environment for a child process: the password travels here, never in argv."""
        env = dict(os.environ if base is None else base)
        if self.password is not None:
            env["PGPASSWORD"] = self.password
        env.setdefault("PGCONNECT_TIMEOUT", _DEFAULT_CONNECT_TIMEOUT)
        return env

    def secrets(self) -> tuple[str, ...]:
        return (self.password,) if self.password else ()

    def _dsn(self, **overrides: str) -> str:
        params: dict[str, Any] = dict(_KEEPALIVE_DEFAULTS)
        params["connect_timeout"] = _DEFAULT_CONNECT_TIMEOUT
        params.update(self.params)
        params.update(overrides)
        if self.password is not None:
            params["password"] = self.password
        return make_conninfo("", **params)

    # -- connecting ---------------------------------------------------------------------
    def connect(
        self,
        purpose: str = "pgferry",
        *,
        autocommit: bool = True,
        settings: Mapping[str, str] | None = None,
        **overrides: str,
    ) -> psycopg.Connection[Any]:
        """Open a connection; failures become one clear ConnectionFailed line."""
        overrides.setdefault("application_name", self.application_name(purpose))
        try:
            conn = psycopg.connect(self._dsn(**overrides), autocommit=autocommit)
        except psycopg.OperationalError as exc:
            raise connection_error(self, exc) from None
        if settings:
            apply_settings(conn, settings)
        return conn

    def connect_replication(self, purpose: str = "pgferry") -> psycopg.Connection[Any]:
        """A logical replication (walsender) connection to the database.

        Output settings are pinned so the decoded values (dates, intervals, floats)
        come in a form the target reads back exactly, whatever the server's defaults.
        """
        pinned = "-c datestyle=ISO,MDY -c intervalstyle=postgres -c extra_float_digits=3"
        options = f"{self.params['options']} {pinned}" if self.params.get("options") else pinned
        return self.connect(purpose, replication="database", options=options)


def apply_settings(conn: psycopg.Connection[Any], settings: Mapping[str, str]) -> None:
    """SET session parameters with proper quoting (set_config is a plain function)."""
    set_settings(conn, settings, local=False)
    if not conn.autocommit:
        conn.commit()


def connection_error(info: ConnInfo, exc: BaseException) -> ConnectionFailed:
    """Turn a libpq connection failure into one line naming the server and the fix."""
    raw = scrub(str(exc).strip(), info.secrets())
    lines = [ln.strip() for ln in raw.splitlines() if ln.strip()]
    detail = lines[-1] if lines else "connection failed"
    detail = re.sub(r"^(connection to server .*? failed:\s*)", "", detail)
    low = raw.lower()
    if "password authentication failed" in low or "no password supplied" in low:
        fix = "check the password (in the URI, PGPASSWORD or ~/.pgpass) and the user name"
    elif "database" in low and "does not exist" in low:
        fix = f'create it first: createdb "{info.dbname}" (on the {info.role} server)'
    elif "role" in low and "does not exist" in low:
        fix = f"create the role {info.user} or connect as another user"
    elif "connection refused" in low or "could not connect" in low or "timeout" in low:
        fix = (
            f"check that the {info.role} server runs and accepts connections on "
            f"{info.host}:{info.port}"
        )
    elif "could not translate host name" in low or "name or service not known" in low:
        fix = f"check the {info.role} host name"
    elif "pg_hba.conf" in low:
        fix = f"allow this client in the {info.role} server's pg_hba.conf"
    elif "ssl" in low:
        fix = "check the sslmode / sslrootcert settings in the URI"
    else:
        fix = None
    return ConnectionFailed(f"cannot connect to {info.role} {info.short()}: {detail}", fix=fix)


def move_passwords(argv: list[str], env: dict[str, str]) -> list[str]:
    """argv without passwords in --source/--target; they go to `env` instead
    (PGFERRY_SOURCE_PASSWORD / PGFERRY_TARGET_PASSWORD), so `ps` never shows them."""
    out = list(argv)
    for i, arg in enumerate(argv):
        for role in ("source", "target"):
            flag = f"--{role}"
            if arg == flag and i + 1 < len(argv):
                pos, value, prefix = i + 1, argv[i + 1], ""
            elif arg.startswith(flag + "="):
                pos, value, prefix = i, arg[len(flag) + 1 :], flag + "="
            else:
                continue
            try:
                info = ConnInfo.parse(value, role)
            except PgferryError:
                continue
            if info.password is not None:
                env[f"PGFERRY_{role.upper()}_PASSWORD"] = info.password
                out[pos] = prefix + info.dsn_without_password()
    return out
