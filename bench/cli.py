"""The command line every benchmark part shares: `--full` picks the defaults of the other options, so
it is read first; then the part's own options, its run, its markdown report and its headline."""

from __future__ import annotations

import argparse
from typing import Any, Protocol


class Part(Protocol):
    """What bench/ingest.py, drain.py and sweep.py each provide (the report has a markdown())."""

    def add_arguments(self, parser: argparse.ArgumentParser, *, full: bool = False) -> None: ...

    def from_args(self, args: argparse.Namespace) -> Any: ...

    def summary_line(self, report: Any) -> str: ...


def wants_full(argv: list[str] | None) -> bool:
    """Whether --full is on the command line (before the parser that depends on it is built)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--full", action="store_true")
    known, _ = pre.parse_known_args(argv)
    return bool(known.full)


def run_part(part: Part, *, prog: str, description: str | None, full_help: str,
             argv: list[str] | None = None) -> None:
    """`python -m bench.<part>`: parse, run, print the report and its one-line summary."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--full", action="store_true", help=full_help)
    part.add_arguments(parser, full=wants_full(argv))
    report = part.from_args(parser.parse_args(argv))
    print(report.markdown())
    print(part.summary_line(report))
