"""Benchmarks: ``.venv/bin/python -m benchmarks.<name> --help`` (see benchmarks/README.md)."""
