"""The work directory (DIR): layout, privacy, and the one-run-at-a-time lock."""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO

from pgferry.errors import InputError, from_os_error

log = logging.getLogger(__name__)

PIDFILE = "pgferry.pid"


def default_dir() -> Path:
    """pgcopydb's default, renamed: ${TMPDIR:-/tmp}/pgferry."""
    return Path(tempfile.gettempdir()) / "pgferry"


class WorkDir:
    """Paths inside DIR. Creating it makes it (and its parents we create) private."""

    def __init__(self, path: Path) -> None:
        self.path = path.expanduser().absolute()
        self._lockfile: IO[str] | None = None

    # layout
    @property
    def schema_dir(self) -> Path:
        return self.path / "schema"

    @property
    def cdc_dir(self) -> Path:
        return self.path / "cdc"

    @property
    def dump_file(self) -> Path:
        return self.schema_dir / "schema.dump"

    @property
    def log_file(self) -> Path:
        return self.path / "pgferry.log"

    @property
    def summary_file(self) -> Path:
        return self.path / "summary.json"

    @property
    def pidfile(self) -> Path:
        return self.path / PIDFILE

    @property
    def state_file(self) -> Path:
        return self.path / "state.db"

    def exists(self) -> bool:
        return self.state_file.exists()

    def require_previous_run(self) -> None:
        """For --resume: refuse a DIR that holds no migration, rather than start afresh.

        A start killed before it recorded anything (its log is there, its state store
        is not) wrote nothing to either server: resuming it is starting it afresh."""
        if self.exists():
            return
        if self.log_file.exists():
            log.info(
                "--resume: the earlier start in %s stopped before recording anything; "
                "starting afresh",
                self.path,
            )
            return
        raise InputError(
            f"--resume: {self.path} holds no migration to resume",
            fix="check --dir (or PGCOPYDB_DIR), or leave out --resume to start anew",
        )

    def create(self) -> None:
        """mkdir -p with 0700 on DIR and its subdirectories; InputError (or
        EnvironmentProblem for a full disk) naming the fix when that cannot be."""
        old = os.umask(0o077)
        try:
            for d in (self.path, self.schema_dir, self.cdc_dir):
                d.mkdir(parents=True, exist_ok=True)
                d.chmod(0o700)
        except (FileExistsError, NotADirectoryError):
            raise InputError(
                f"--dir {self.path} is not a directory (a file is in the way)",
                fix="choose another --dir, or remove that file",
            ) from None
        except OSError as exc:
            raise from_os_error(exc) or InputError(
                f"cannot create the work directory {self.path}: {exc.strerror or exc}",
                fix="choose another --dir",
            ) from None
        finally:
            os.umask(old)
        if not os.access(self.path, os.W_OK | os.X_OK):
            raise InputError(
                f"the work directory {self.path} is not writable",
                fix="choose a --dir this user can write to, on a writable file system",
            )

    def wipe(self, *, keep_state: bool = False) -> None:
        """Remove everything pgferry keeps in DIR (for --restart); keep the lock file and
        the log (the history of every run in DIR, this one's included: it is open), and
        with `keep_state` the state store (reset in place by its owner)."""
        kept = {PIDFILE, self.log_file.name}
        if keep_state:
            kept |= {p.name for p in self.path.glob(self.state_file.name + "*")}
        for child in self.path.iterdir():
            if child.name in kept:
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
        self.create()

    # the lock
    def lock(self) -> None:
        """Take DIR for this process; refuse if another pgferry holds it."""
        fd = os.open(self.pidfile, os.O_RDWR | os.O_CREAT, 0o600)
        f = os.fdopen(fd, "r+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = f.read().strip() or "?"
            f.close()
            raise InputError(
                f"another pgferry (pid {pid}) is running on {self.path}",
                fix=f"wait for it to end, or stop it: pgferry stop --dir {self.path}",
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        self._lockfile = f

    def unlock(self) -> None:
        if self._lockfile is not None:
            try:
                self._lockfile.seek(0)
                self._lockfile.truncate()
            finally:
                self._lockfile.close()
                self._lockfile = None

    def running_pid(self) -> int | None:
        """The pid of the pgferry that holds DIR, or None when none does."""
        if not self.pidfile.exists():
            return None
        with open(self.pidfile) as f:
            try:
                fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                text = f.read().strip()
                return int(text) if text.isdigit() else -1
            fcntl.flock(f, fcntl.LOCK_UN)
            return None
