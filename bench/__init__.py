"""Benchmarks: ``python -m bench.<name>``; figures and commands are in docs/BENCHMARKS.md."""
