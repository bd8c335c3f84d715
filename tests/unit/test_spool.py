"""The change spool (cdc/spool.py): what is written is read back once, in commit order."""

from __future__ import annotations

from pathlib import Path

from pgferry.cdc.spool import SpoolReader, SpoolWriter, last_entry, read_index, spool_files


def _write(writer: SpoolWriter, begin: int, commit: int, rows: int = 1) -> bool:
    writer.begin(begin, commit)
    for i in range(rows):
        writer.change(begin + 1 + i, f"row {commit}.{i}".encode())
    return writer.commit(commit, 0)


def _entries(root: Path) -> list[int]:
    return [e.commit_lsn for f in spool_files(root) for e in read_index(root, f)]


def test_a_transaction_sent_again_is_kept_once(tmp_path: Path) -> None:
    """A lost connection makes the source send again what came after the position the
    receiver restarts from: whether the first copy is flushed yet or not, the spool
    keeps one."""
    writer = SpoolWriter(tmp_path)
    assert _write(writer, 10, 20)
    writer.flush()
    assert _write(writer, 30, 40)  # received, not yet flushed
    assert not _write(writer, 10, 20)  # sent again: already durable
    assert not _write(writer, 30, 40)  # sent again: pending
    assert _write(writer, 50, 60)
    writer.close()
    assert _entries(tmp_path) == [20, 40, 60]
    reader = SpoolReader(tmp_path)
    entries = read_index(tmp_path, spool_files(tmp_path)[0])
    payloads = [p for e in entries for _, p in reader.changes(e, e.end_off)]
    reader.close()
    assert payloads == [b"row 20.0", b"row 40.0", b"row 60.0"]


def test_after_a_crash_the_spool_knows_its_position(tmp_path: Path) -> None:
    writer = SpoolWriter(tmp_path)
    _write(writer, 10, 20, rows=3)
    writer.flush()
    writer.begin(30, 1)  # cut off mid-transaction by a crash
    writer.change(31, b"partial")
    assert writer.data is not None
    writer.data.flush()
    again = SpoolWriter(tmp_path)
    assert again.position == 20
    assert not _write(again, 10, 20)
    assert _write(again, 30, 40)
    again.close()
    assert _entries(tmp_path) == [20, 40]
    last = last_entry(tmp_path)
    assert last is not None and last.changes == 1


def test_a_keepalive_position_counts_as_received(tmp_path: Path) -> None:
    writer = SpoolWriter(tmp_path)
    writer.pending_lsn = 100  # the server said: nothing else up to 100
    assert writer.flush() == 100
    assert not _write(writer, 50, 90)
    assert _write(writer, 110, 120)
    writer.close()
    assert _entries(tmp_path) == [120]
