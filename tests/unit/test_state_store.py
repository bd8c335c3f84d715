"""The state store's fresh-start reset: an end position given by stop-cdc, before or
while a stopped attempt is forgotten, survives it (explorer seeds 111 and 239: the whole
store used to be deleted, and a stop-cdc writing to it at that moment was lost)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pgferry.state.store import Meta, StateStore
from pgferry.state.workdir import WorkDir

if TYPE_CHECKING:
    from pathlib import Path


def _attempt(path: Path) -> StateStore:
    """A store as an attempt leaves it: plan, a run, CDC set up, a sentinel."""
    wd = WorkDir(path)
    wd.create()
    store = StateStore.open_dir(path)
    store.begin_run("clone", 1)
    store.set_meta(Meta.STARTED_AT, "1")
    store.set_meta(Meta.CDC_SLOT, "s")
    store.set_sentinel(startpos="0/10", apply=1, write_lsn="0/20", flush_lsn="0/20")
    return store


def test_reset_forgets_the_attempt_but_keeps_a_given_end_position(tmp_path: Path) -> None:
    store = _attempt(tmp_path)
    store.set_sentinel(endpos="0/30")
    store.set_meta(Meta.ENDPOS_KIND, "current")
    store.reset_keeping_endpos()
    row = store.sentinel()
    assert row is not None
    assert (row.startpos, row.endpos, row.apply, row.flush_lsn) == (None, "0/30", False, None)
    assert store.get_meta(Meta.ENDPOS_KIND) == "current"
    assert store.get_meta(Meta.CDC_SLOT) is None and store.get_meta(Meta.STARTED_AT) is None
    assert store.runs() == []
    store.close()


def test_stop_cdc_racing_the_reset_is_not_lost(tmp_path: Path) -> None:
    """stop-cdc opened the store before the reset and writes after it (and after the
    directory was cleared around it): the fresh attempt sees its end position."""
    store = _attempt(tmp_path)
    other = StateStore.open_dir(tmp_path)  # stop-cdc, already looking at the store
    store.reset_keeping_endpos()
    WorkDir(tmp_path).wipe(keep_state=True)
    other.set_sentinel(endpos="0/40")
    other.set_meta(Meta.ENDPOS_KIND, "current")
    other.close()
    row = store.sentinel()
    assert row is not None and row.endpos == "0/40"
    store.close()
