"""The README is the user's first hour: its configuration and metrics tables cover what the code has."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from xscore.api.errors import GRPC_STATUS, HTTP_STATUS, ErrorCode
from xscore.gateway.metrics import gateway_metrics
from xscore.service.cli import build_parser
from xscore.service.serving.metrics import Metrics

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def _section(title: str) -> str:
    start = README.index(f"## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end]


def test_the_configuration_table_lists_every_serve_flag_and_its_variable() -> None:
    table = _section("Configuration")
    subcommands = next(action for action in build_parser()._actions
                       if isinstance(action, argparse._SubParsersAction))
    for action in subcommands.choices["serve"]._actions:
        if not action.option_strings or action.dest == "help":
            continue
        flag = action.option_strings[0]
        row = next((line for line in table.splitlines() if line.startswith(f"| `{flag}` |")), None)
        assert row is not None, f"{flag} is missing from the README's configuration table"
        for variable in re.findall(r"env (XSCORE_[A-Z_]+)", action.help or ""):
            assert f"`{variable}`" in row, f"{flag}'s row does not name {variable}"


def test_the_metrics_table_lists_every_metric() -> None:
    table = _section("Metrics")
    metrics = Metrics()
    gateway = gateway_metrics(metrics.registry)
    collectors = [value for value in (*vars(metrics).values(), *(gateway.requests, gateway.latency))
                  if hasattr(value, "_name")]
    assert len(collectors) > 20
    for collector in collectors:
        name = collector._name + ("_total" if collector._type == "counter" else "")
        assert f"| `{name}` |" in table, f"{name} is missing from the README's metrics table"


def test_the_error_table_gives_each_code_its_http_status_and_grpc_code() -> None:
    table = _section("Errors")
    for code in ErrorCode:
        row = next((line for line in table.splitlines() if f"`{code.value}`" in line), None)
        assert row is not None, f"{code.value} is missing from the README's error table"
        assert str(HTTP_STATUS[code]) in row
        assert GRPC_STATUS.get(code, "(HTTP only)") in row or "(HTTP only)" in row
