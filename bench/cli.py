"""The command line every benchmark part shares: `--full` picks the defaults of the other options, so
it is read first; then the part's own options, its run, its markdown report and its headline."""

from __future__ import annotations

import argparse
from importlib.machinery import ModuleSpec
from typing import Any, Protocol


class Part(Protocol):
    """What each part module (bench/ingest.py, drain.py, sweep.py, ...) provides (the report has a
    markdown()); its name and docstring make the command line's program name and description."""

    __name__: str
    __spec__: ModuleSpec | None
    __doc__: str | None

    def add_arguments(self, parser: argparse.ArgumentParser, *, full: bool = False) -> None: ...

    def from_args(self, args: argparse.Namespace) -> Any: ...

    def summary_line(self, report: Any) -> str: ...


def wants_full(argv: list[str] | None) -> bool:
    """Whether --full is on the command line (before the parser that depends on it is built)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--full", action="store_true")
    known, _ = pre.parse_known_args(argv)
    return bool(known.full)


def run_part(part: Part, *, full_help: str, argv: list[str] | None = None) -> None:
    """`python -m bench.<part>`: parse, run, print the report and its one-line summary."""
    name = part.__spec__.name if part.__spec__ is not None else part.__name__  # "__main__" under -m
    parser = argparse.ArgumentParser(prog=f"python -m {name}", description=part.__doc__)
    parser.add_argument("--full", action="store_true", help=full_help)
    part.add_arguments(parser, full=wants_full(argv))
    report = part.from_args(parser.parse_args(argv))
    print(report.markdown())
    print(part.summary_line(report))
