"""`python -m bench`: ingest, drain and sweep with short defaults (`make bench`); `--full` for the
issue's sizes. Prints one markdown report (also saved under bench/out/, which git ignores); the
reading of the figures goes into bench/RESULTS.md by hand.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime

from bench import cli, drain, harness, ingest, loadgen, machine, notify, scrape, sweep

MODULES: dict[str, cli.Part] = {"ingest": ingest, "drain": drain, "sweep": sweep, "scrape": scrape,
                                "notify": notify}
PARTS = tuple(MODULES)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--full", action="store_true",
                        help="the issue's sizes: 30 s x 3 rounds of ingest, 10,000 callbacks, 1M orders "
                             "(sweep and scrape)")
    parser.add_argument("--only", default=",".join(PARTS),
                        help="comma-separated subset of ingest,drain,sweep,scrape,notify")
    full = cli.wants_full(argv)
    for module in MODULES.values():
        module.add_arguments(parser, full=full)
    args = parser.parse_args(argv)
    parts = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown part(s): {', '.join(unknown)}")

    header = ["# QPay pipeline benchmarks", "", machine.describe(),
              f"- load generator: {'wrk' if loadgen.have_wrk() else 'Python fallback — ' + loadgen.WRK_HINT}",
              f"- PostgreSQL {machine.postgres_version(harness.dsn(harness.ensure_default_postgres()))} "
              "(the machine's default cluster, shared), private Redis",
              f"- mode: {'full' if args.full else 'short (make bench)'}", ""]
    print("\n".join(header), flush=True)
    sections: list[str] = []
    summaries: list[str] = []
    started = time.monotonic()
    for part in parts:
        print(f"## {part}", flush=True)
        t0 = time.monotonic()
        module = MODULES[part]
        report = module.from_args(args)
        sections.append(report.markdown())
        summaries.append(module.summary_line(report))
        print(f"  ({part} took {time.monotonic() - t0:.0f} s)\n", flush=True)
    text = "\n".join([*header, *[s + "\n" for s in sections], "### headline", "",
                      *[f"- {s}" for s in summaries],
                      f"\n(total {time.monotonic() - started:.0f} s)"])
    path = harness.out_dir() / f"bench-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.md"
    path.write_text(text + "\n")
    print(text)
    print(f"\nsaved to {path.relative_to(harness.PROJECT_DIR)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
