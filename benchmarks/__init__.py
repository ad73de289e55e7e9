"""Benchmarks (not tests): ``python -m benchmarks.epoch``, ``benchmarks.sweep``, ``benchmarks.cache``.

Each prints one summary line at the end; figures measured are recorded in ``benchmarks/README.md``.
"""
