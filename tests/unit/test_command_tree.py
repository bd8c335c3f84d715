"""pgferry's command tree against pgcopydb's: every pgcopydb 0.18 command (and the
older ones pgcopydb users still type) exists, with the flags pgcopydb gives it; every
command and flag of ours says what it does."""

from __future__ import annotations

import argparse

import pytest

from pgferry.cli.main import build_parser

_CLONE_FLAGS = (
    "--source --target --dir --table-jobs --jobs --index-jobs --restore-jobs "
    "--large-objects-jobs --split-tables-larger-than --split-at --split-max-parts "
    "--estimate-table-sizes --skip-analyze --skip-split-by-ctid --drop-if-exists --roles "
    "--no-role-passwords --no-owner --no-acl --no-comments --no-tablespaces "
    "--skip-large-objects --skip-blobs --skip-extensions --skip-ext-comments "
    "--skip-ext-comment --skip-collations --skip-publications --skip-db-properties "
    "--skip-vacuum --filters --filter --fail-fast --restart --resume --not-consistent "
    "--snapshot --use-copy-binary --restore-tolerance --verbose --notice --debug --trace "
    "--quiet"
)
_CDC_FLAGS = "--plugin --wal2json-numeric-as-string --slot-name --origin --create-slot --endpos"

# pgcopydb 0.18's commands (docs/include/help.rst and each command's page) and the flags
# each takes, as pgcopydb spells them; plus `dump pre-data|post-data`, `stream create|drop`
# and `stream sentinel create|drop` of the releases before.
PGCOPYDB_TREE: dict[str, str] = {
    "clone": f"{_CLONE_FLAGS} --follow {_CDC_FLAGS}",
    "fork": f"{_CLONE_FLAGS} --follow {_CDC_FLAGS}",
    "follow": "--source --target --dir --filters --restart --resume --not-consistent "
    f"--snapshot {_CDC_FLAGS}",
    "snapshot": "--source --dir --follow --plugin --slot-name --wal2json-numeric-as-string",
    "compare schema": "--source --target --dir",
    "compare data": "--source --target --dir --json",
    "copy db": f"{_CLONE_FLAGS} --follow",
    "copy roles": "--source --target --no-role-passwords",
    "copy extensions": "--source --target --requirements",
    "copy schema": "--source --target --dir --filters --restart --resume --not-consistent "
    "--snapshot --drop-if-exists --no-owner --no-acl --no-comments --no-tablespaces "
    "--skip-extensions --skip-collations --skip-publications --restore-jobs",
    "copy data": "--source --target --dir --filters --table-jobs --index-jobs --restart "
    "--resume --not-consistent --snapshot --split-tables-larger-than --split-max-parts "
    "--skip-split-by-ctid --estimate-table-sizes --use-copy-binary --skip-vacuum",
    "copy table-data": "--source --target --dir --filters --table-jobs --restart --resume "
    "--not-consistent --snapshot --split-tables-larger-than --split-max-parts",
    "copy blobs": "--source --target",
    "copy sequences": "--source --target",
    "copy indexes": "--source --target --dir --filters --index-jobs --restore-jobs "
    "--restart --resume --not-consistent",
    "copy constraints": "--source --target --dir --filters --index-jobs --restore-jobs "
    "--restart --resume --not-consistent",
    "dump schema": "--source --dir --filters --snapshot --skip-extensions --skip-collations "
    "--skip-publications",
    "dump pre-data": "--source --dir --filters --snapshot",
    "dump post-data": "--source --dir --filters --snapshot",
    "dump roles": "--source --dir --no-role-passwords",
    "restore schema": "--source --target --dir --filters --restore-jobs --restore-tolerance "
    "--drop-if-exists --no-owner --no-acl --no-comments --no-tablespaces --skip-extensions "
    "--skip-ext-comments --skip-collations --skip-publications",
    "restore pre-data": "--source --target --dir --filters --restore-jobs --drop-if-exists "
    "--no-owner --no-acl --no-comments --no-tablespaces --skip-extensions",
    "restore post-data": "--source --target --dir --filters --restore-jobs --no-owner "
    "--no-acl --no-comments --no-tablespaces",
    "restore roles": "--target --dir",
    "restore parse-list": "--dir --filters",
    "list databases": "--source",
    "list extensions": "--source --json --available-versions --requirements",
    "list collations": "--source",
    "list tables": "--source --filter --force --list-skipped --without-pkey",
    "list table-parts": "--source --schema-name --table-name --split-tables-larger-than "
    "--split-max-parts --skip-split-by-ctid --estimate-table-sizes",
    "list sequences": "--source --filter",
    "list indexes": "--source --schema-name --table-name --list-skipped",
    "list depends": "--source --schema-name --table-name --list-skipped",
    "list schema": "--source --filter",
    "list progress": "--dir --summary --json",
    "stream setup": "--source --target --dir --plugin --slot-name --origin",
    "stream cleanup": "--source --target --dir --slot-name --origin",
    "stream create": "--source --target --dir --plugin --slot-name --origin",
    "stream drop": "--source --target --dir",
    "stream prefetch": "--source --dir --endpos",
    "stream catchup": "--source --target --dir --endpos",
    "stream replay": "--source --target --dir --endpos",
    "stream receive": "--source --dir --endpos",
    "stream apply": "--target --dir",
    "stream sentinel setup": "--dir --startpos --endpos",
    "stream sentinel create": "--dir --startpos --endpos",
    "stream sentinel drop": "--dir",
    "stream sentinel get": "--dir --json --startpos --endpos --apply --write-lsn "
    "--flush-lsn --replay-lsn",
    "stream sentinel set startpos": "--dir",
    "stream sentinel set endpos": "--dir --source --current",
    "stream sentinel set apply": "--dir",
    "stream sentinel set prefetch": "--dir",
    "ping": "--source --target",
    "help": "",
    "version": "",
}


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _find(path: str) -> argparse.ArgumentParser:
    parser = build_parser()
    for word in path.split():
        choices = _subcommands(parser)
        assert word in choices, f"pgferry {path}: no {word!r} (has {sorted(choices)})"
        parser = choices[word]
    return parser


def _flags(parser: argparse.ArgumentParser) -> set[str]:
    return {o for a in parser._actions for o in a.option_strings}


@pytest.mark.parametrize("path", sorted(PGCOPYDB_TREE))
def test_pgcopydb_command_exists_with_its_flags(path: str) -> None:
    parser = _find(path)
    missing = sorted(set(PGCOPYDB_TREE[path].split()) - _flags(parser))
    assert not missing, f"pgferry {path} lacks {missing}"


def _walk(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    out = [(path, parser)]
    for name, sub in _subcommands(parser).items():
        out += _walk(sub, (*path, name))
    return out


def test_every_command_and_flag_has_a_help_text() -> None:
    bare: list[str] = []
    for path, parser in _walk(build_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                helped = {id(action.choices[a.dest]) for a in action._choices_actions if a.help}
                bare += [
                    " ".join((*path, n))
                    for n, sub in action.choices.items()
                    if id(sub) not in helped  # an alias shares its command's parser
                ]
            elif action.option_strings and not action.help and action.dest != "help":
                bare.append(f"{' '.join(path)} {action.option_strings[0]}")
    assert not bare, "\n".join(sorted(set(bare)))


def test_pgcopydb_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    from pgferry.cli.clone import options_from_args

    monkeypatch.setenv("PGCOPYDB_SOURCE_PGURI", "postgresql://u@h1/a")
    monkeypatch.setenv("PGCOPYDB_TARGET_PGURI", "postgresql://u@h2/b")
    monkeypatch.setenv("PGCOPYDB_DROP_IF_EXISTS", "true")
    monkeypatch.setenv("PGCOPYDB_SPLIT_TABLES_LARGER_THAN", "2GB")
    monkeypatch.setenv("PGCOPYDB_SKIP_CTID_SPLIT", "on")
    monkeypatch.setenv("PGCOPYDB_FAIL_FAST", "yes")
    options = options_from_args(build_parser().parse_args(["clone"]))
    assert options.drop_if_exists and options.fail_fast and options.skip_split_by_ctid
    assert options.split_tables_larger_than == 2 * 1024**3
    assert options.plan_options().split_tables_larger_than == 0  # no CTID split: no split
