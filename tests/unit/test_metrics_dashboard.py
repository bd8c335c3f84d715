"""docs/grafana-dashboard.json asks only for metrics pgferry serves."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pgferry.monitor.metrics as metrics

ROOT = Path(__file__).resolve().parents[2]


def test_dashboard_names_only_served_metrics() -> None:
    dashboard = json.loads((ROOT / "docs" / "grafana-dashboard.json").read_text())
    asked = {
        name.removesuffix("_total")
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"pgferry_\w+", target["expr"])
    }
    served = set(re.findall(r'"(pgferry_\w+)"', Path(metrics.__file__).read_text()))
    assert asked and asked <= served, sorted(asked - served)
