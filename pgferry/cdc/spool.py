"""The change spool: decoded changes on local disk, between the receiver and apply.

Layout in DIR/cdc: numbered data files `00000001.spool` holding length-prefixed change
records exactly as the output plugin sent them, and next to each an index
`00000001.idx` with one fixed-size entry per committed transaction (where its changes
are, its commit LSN and time). A transaction never spans two data files.

Durability order: data is fsynced before the index entries that point to it are written
and fsynced; only then is the commit LSN reported as flushed to the source. So every
index entry on disk describes a complete, durable transaction, and a crash loses at most
transactions the source will send again.
"""

from __future__ import annotations

import os
import shutil
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

_RECORD = struct.Struct(">IQ")  # payload length, LSN
_ENTRY = struct.Struct(">QQQQqII")  # begin_off, end_off, begin_lsn, commit_lsn, ts, xid, changes
ROTATE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class TxnEntry:
    """A committed transaction in the spool."""

    file_no: int
    begin_off: int
    end_off: int
    begin_lsn: int
    commit_lsn: int
    commit_time: int  # microseconds since 2000-01-01
    xid: int
    changes: int


def record_bytes(lsn: int, payload: bytes) -> bytes:
    """One change record as the spool stores it."""
    return _RECORD.pack(len(payload), lsn) + payload


def data_path(root: Path, file_no: int) -> Path:
    return root / f"{file_no:08d}.spool"


def index_path(root: Path, file_no: int) -> Path:
    return root / f"{file_no:08d}.idx"


def spool_files(root: Path) -> list[int]:
    return sorted(int(p.stem) for p in root.glob("*.idx") if p.stem.isdigit())


def read_index(root: Path, file_no: int, start: int = 0) -> list[TxnEntry]:
    """Complete entries of one index file from entry number `start` on."""
    path = index_path(root, file_no)
    try:
        with open(path, "rb") as f:
            f.seek(start * _ENTRY.size)
            data = f.read()
    except FileNotFoundError:
        return []
    count = len(data) // _ENTRY.size
    return [TxnEntry(file_no, *_ENTRY.unpack_from(data, i * _ENTRY.size)) for i in range(count)]


def last_entry(root: Path) -> TxnEntry | None:
    for file_no in reversed(spool_files(root)):
        entries = read_index(root, file_no)
        if entries:
            return entries[-1]
    return None


class SpoolReader:
    """Reads transactions in spool order, keeping the data file open and buffered.

    Bytes past the end of the last indexed transaction may still be rewritten by the
    receiver (a transaction cut off by a lost connection), so the read-ahead never goes
    past `limit`, the end of the newest index entry known for the file.
    """

    def __init__(self, root: Path, chunk: int = 1024 * 1024) -> None:
        self.root = root
        self.chunk = chunk
        self.file_no = -1
        self.f: BinaryIO | None = None
        self.buf = b""
        self.buf_off = 0  # file offset of buf[0]

    def close(self) -> None:
        if self.f is not None:
            self.f.close()
            self.f = None

    def changes(self, entry: TxnEntry, limit: int) -> Iterator[tuple[int, bytes]]:
        if entry.file_no != self.file_no:
            self.close()
            self.f = open(data_path(self.root, entry.file_no), "rb")  # noqa: SIM115
            self.file_no = entry.file_no
            self.buf, self.buf_off = b"", 0
        limit = max(limit, entry.end_off)
        if not self.buf_off <= entry.begin_off <= self.buf_off + len(self.buf):
            self.buf, self.buf_off = b"", entry.begin_off
        pos = entry.begin_off - self.buf_off
        end = entry.end_off - self.buf_off
        header = _RECORD.size
        unpack = _RECORD.unpack_from
        while pos < end:
            if pos + header > len(self.buf):
                end -= pos
                pos = self._fill(pos, header, limit)
            length, lsn = unpack(self.buf, pos)
            if pos + header + length > len(self.buf):
                end -= pos
                pos = self._fill(pos, header + length, limit)
            start = pos + header
            yield lsn, self.buf[start : start + length]
            pos = start + length

    def _fill(self, pos: int, need: int, limit: int) -> int:
        """Make buf hold at least `need` bytes from `pos`; returns the new position (0)."""
        assert self.f is not None
        self.buf = self.buf[pos:]
        self.buf_off += pos
        have = self.buf_off + len(self.buf)
        want = min(max(need - len(self.buf), self.chunk), limit - have)
        if want > 0:
            self.f.seek(have)
            self.buf += self.f.read(want)
        if len(self.buf) < need:
            raise OSError(f"spool file {self.f.name} is shorter than its index says")
        return 0


class SpoolWriter:
    """Appends transactions; `flush()` makes them durable and returns the durable LSN."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.file_no = 0
        self.data: BinaryIO | None = None
        self.offset = 0
        self.pending: list[bytes] = []  # index entries waiting for their data's fsync
        self.pending_lsn = 0
        self.durable_lsn = 0
        self.in_txn = False
        self._begin: tuple[int, int] = (0, 0)
        self._changes = 0
        self._recover()

    def _recover(self) -> None:
        """Drop whatever a crash left after the last durable transaction."""
        self.root.mkdir(parents=True, exist_ok=True)
        files = spool_files(self.root)
        last = last_entry(self.root)
        for file_no in files:
            if last is not None and file_no > last.file_no:
                for p in (data_path(self.root, file_no), index_path(self.root, file_no)):
                    p.unlink(missing_ok=True)
        if last is None:
            self.file_no = (files[0] - 1) if files else 0
            for file_no in files:
                for p in (data_path(self.root, file_no), index_path(self.root, file_no)):
                    p.unlink(missing_ok=True)
            self._open(self.file_no + 1)
            return
        idx = index_path(self.root, last.file_no)
        entries = read_index(self.root, last.file_no)
        with open(idx, "r+b") as f:
            f.truncate(len(entries) * _ENTRY.size)
        self.file_no = last.file_no
        self.data = open(data_path(self.root, last.file_no), "r+b")  # noqa: SIM115
        self.data.truncate(last.end_off)
        self.data.seek(last.end_off)
        self.offset = last.end_off
        self.durable_lsn = last.commit_lsn

    def _open(self, file_no: int) -> None:
        if self.data is not None:
            self.data.close()
        self.file_no = file_no
        self.data = open(data_path(self.root, file_no), "wb", buffering=1024 * 1024)  # noqa: SIM115
        index_path(self.root, file_no).touch()
        self.offset = 0

    def begin(self, lsn: int, xid: int) -> None:
        if self.in_txn:  # a BEGIN without COMMIT: the previous transaction was cut off
            self.abort()
        if self.offset >= ROTATE_BYTES:
            self.flush()  # the pending index entries belong to the current file
            self._open(self.file_no + 1)
        self.in_txn = True
        self._begin = (self.offset, lsn)
        self._xid = xid
        self._changes = 0

    def change(self, lsn: int, payload: bytes | memoryview) -> None:
        assert self.data is not None
        self.data.write(_RECORD.pack(len(payload), lsn))
        self.data.write(payload)
        self.offset += _RECORD.size + len(payload)
        self._changes += 1

    def append(self, records: BinaryIO, size: int, changes: int) -> None:
        """Copy `size` bytes of `changes` records (from a streamed transaction's file)
        into the open transaction, a megabyte at a time."""
        assert self.data is not None
        start = self.data.tell()
        shutil.copyfileobj(records, self.data, 1024 * 1024)
        if self.data.tell() - start != size:
            raise OSError(f"{records.name}: {self.data.tell() - start} bytes copied, not {size}")
        self.offset += size
        self._changes += changes

    @property
    def position(self) -> int:
        """Everything up to here is in the spool (durable or waiting for `flush`)."""
        return max(self.durable_lsn, self.pending_lsn)

    def commit(self, commit_lsn: int, commit_time: int, xid: int | None = None) -> bool:
        """End the open transaction; False when it was dropped because the spool holds
        it already (it commits at or before `position`): a source that sends a
        transaction again never gets it applied twice."""
        if commit_lsn <= self.position:
            self.abort()
            return False
        begin_off, begin_lsn = self._begin
        if self._changes:
            self.pending.append(
                _ENTRY.pack(
                    begin_off,
                    self.offset,
                    begin_lsn,
                    commit_lsn,
                    commit_time,
                    (xid if xid is not None else self._xid) & 0xFFFFFFFF,
                    self._changes,
                )
            )
        self.pending_lsn = max(self.pending_lsn, commit_lsn)
        self.in_txn = False
        return True

    def abort(self) -> None:
        """Forget the open transaction's changes (connection lost mid-transaction)."""
        assert self.data is not None
        if self.in_txn:
            begin_off = self._begin[0]
            self.data.flush()
            self.data.truncate(begin_off)
            self.data.seek(begin_off)
            self.offset = begin_off
        self.in_txn = False

    def flush(self) -> int:
        """fsync data, then the index entries pointing to it; returns the durable LSN."""
        assert self.data is not None
        if self.pending or self.pending_lsn > self.durable_lsn:
            self.data.flush()
            os.fsync(self.data.fileno())
            if self.pending:
                with open(index_path(self.root, self.file_no), "ab") as f:
                    f.write(b"".join(self.pending))
                    f.flush()
                    os.fsync(f.fileno())
                self.pending.clear()
            self.durable_lsn = max(self.durable_lsn, self.pending_lsn)
        return self.durable_lsn

    def close(self) -> None:
        if self.data is not None:
            if self.in_txn:
                self.abort()
            self.flush()
            self.data.close()
            self.data = None


def remove_applied(root: Path, applied_lsn: int) -> int:
    """Delete spool files whose every transaction is applied (never the newest file)."""
    files = spool_files(root)
    removed = 0
    for file_no in files[:-1]:
        entries = read_index(root, file_no)
        if entries and entries[-1].commit_lsn > applied_lsn:
            break
        for p in (data_path(root, file_no), index_path(root, file_no)):
            p.unlink(missing_ok=True)
        removed += 1
    return removed


@dataclass(frozen=True)
class SpoolBacklog:
    """Received, durable transactions not applied yet (from the spool's index files)."""

    pending_txns: int
    pending_bytes: int
    oldest_pending: TxnEntry | None
    last_applied: TxnEntry | None


def _entry(f: Any, file_no: int, i: int) -> TxnEntry:
    f.seek(i * _ENTRY.size)
    return TxnEntry(file_no, *_ENTRY.unpack(f.read(_ENTRY.size)))


def spool_backlog(root: Path, applied: int) -> SpoolBacklog:
    """Index entries are fixed-size and in commit order: a binary search per file finds
    the first transaction after `applied` without reading the whole index."""
    pending_txns = pending_bytes = 0
    oldest: TxnEntry | None = None
    last_applied: TxnEntry | None = None
    for file_no in spool_files(root):
        try:
            with open(index_path(root, file_no), "rb") as f:
                count = os.fstat(f.fileno()).st_size // _ENTRY.size
                if count == 0:
                    continue
                last = _entry(f, file_no, count - 1)
                if last.commit_lsn <= applied:
                    last_applied = last
                    continue
                lo, hi = 0, count - 1
                while lo < hi:
                    mid = (lo + hi) // 2
                    if _entry(f, file_no, mid).commit_lsn > applied:
                        hi = mid
                    else:
                        lo = mid + 1
                first = _entry(f, file_no, lo)
                if lo > 0:
                    last_applied = _entry(f, file_no, lo - 1)
        except OSError:
            continue  # removed by apply's cleanup while we looked: all applied
        oldest = oldest or first
        pending_txns += count - lo
        pending_bytes += last.end_off - first.begin_off
    return SpoolBacklog(pending_txns, pending_bytes, oldest, last_applied)


def newest_commit(root: Path) -> int | None:
    """The commit LSN of the newest transaction in the spool (None when it holds none):
    it moves whenever a transaction of the source in scope is received."""
    for file_no in reversed(spool_files(root)):
        try:
            with open(index_path(root, file_no), "rb") as f:
                count = os.fstat(f.fileno()).st_size // _ENTRY.size
                if count:
                    return _entry(f, file_no, count - 1).commit_lsn
        except OSError:
            continue  # removed by apply's cleanup meanwhile
    return None
