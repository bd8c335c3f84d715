"""The command tree: pgcopydb's names where pgferry has the command, help on each."""

from __future__ import annotations

import argparse

import pytest

from pgferry import __version__
from pgferry.cli.main import build_parser, main


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def test_every_command_and_step_has_a_help_text() -> None:
    missing: list[str] = []

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                helped = {c.dest for c in action._choices_actions if c.help}
                for name, child in action.choices.items():
                    if child not in seen:
                        seen.add(child)
                        if name not in helped:
                            missing.append(f"{path} {name}".strip())
                        walk(child, f"{path} {name}")

    seen: set[argparse.ArgumentParser] = set()
    walk(build_parser(), "")
    assert missing == []


def test_pgcopydb_aliases_are_the_clone() -> None:
    commands = _commands(build_parser())
    for alias in ("fork", "copy-db"):
        args = build_parser().parse_args([alias, "--source", "postgres://a", "--target", "b"])
        assert args.handler is build_parser().parse_args(["clone"]).handler
        assert alias in commands


def test_copy_steps() -> None:
    steps = _commands(_commands(build_parser())["copy"])
    assert {"sequences", "blobs", "large-objects"} <= set(steps)


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["version"]) == 0
    assert capsys.readouterr().out.strip() == f"pgferry {__version__}"
    assert main(["help", "copy", "sequences"]) == 0
    assert "usage: pgferry copy sequences" in capsys.readouterr().out
    assert main(["help"]) == 0
    assert "usage: pgferry" in capsys.readouterr().out


def test_trace_is_debug() -> None:
    args = build_parser().parse_args(["ping", "--trace"])
    assert args.debug is True
