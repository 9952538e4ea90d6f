"""Benchmarks: figures with controls run in the same invocation (issue 9). Not tests; not run in CI.

`python -m bench` runs ingest, drain and sweep with short defaults; see docs/benchmarks.md.
"""
