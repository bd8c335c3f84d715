"""PASS/WARN/FAIL reports shared by the operations commands (preflight, verify, ...).

A report is a list of checks; it renders as a table (colour on a terminal, plain text
otherwise) or as JSON, and gives the exit code scripts can trust: non-zero on any FAIL.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, TextIO

from pgferry.errors import ExitCode


class Verdict(StrEnum):
    PASS = "PASS"
    WARN = "WARN"
    FAIL = "FAIL"
    SKIP = "SKIP"  # not applicable here (e.g. CDC checks without --follow)


VERDICT_STYLE = {  # the colour of each verdict in a terminal
    Verdict.PASS: "green",
    Verdict.WARN: "yellow",
    Verdict.FAIL: "bold red",
    Verdict.SKIP: "dim",
}


@dataclass(frozen=True)
class Check:
    """One line of a report: what was checked, the outcome, and the fix when it failed."""

    name: str  # stable identifier, e.g. "source.wal_level"
    verdict: Verdict
    message: str
    fix: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Report:
    title: str
    checks: list[Check] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)  # context shown above the checks

    def add(
        self, name: str, verdict: Verdict, message: str, fix: str | None = None, **details: Any
    ) -> Check:
        check = Check(name, verdict, message, fix, details)
        self.checks.append(check)
        return check

    def ok(self, name: str, message: str, **details: Any) -> Check:
        return self.add(name, Verdict.PASS, message, **details)

    def warn(self, name: str, message: str, fix: str | None = None, **details: Any) -> Check:
        return self.add(name, Verdict.WARN, message, fix, **details)

    def fail(self, name: str, message: str, fix: str | None = None, **details: Any) -> Check:
        return self.add(name, Verdict.FAIL, message, fix, **details)

    def skip(self, name: str, message: str) -> Check:
        return self.add(name, Verdict.SKIP, message)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.verdict == Verdict.FAIL]

    @property
    def warnings(self) -> list[Check]:
        return [c for c in self.checks if c.verdict == Verdict.WARN]

    @property
    def verdict(self) -> Verdict:
        if self.failed:
            return Verdict.FAIL
        if self.warnings:
            return Verdict.WARN
        return Verdict.PASS

    def exit_code(self) -> int:
        return int(ExitCode.FAILED) if self.failed else int(ExitCode.OK)

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "verdict": str(self.verdict),
            "facts": self.facts,
            "checks": [{**asdict(c), "verdict": str(c.verdict)} for c in self.checks],
        }

    def print_json(self, out: TextIO | None = None) -> None:
        out = out or sys.stdout
        json.dump(self.to_json(), out, indent=2, default=str)
        out.write("\n")
