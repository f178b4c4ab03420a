"""Benchmarks of the connector against the ideal, the hand-written loop and a raw dlt load.

`run_bench.py` is the entry point. It imports the modules that measure (`harness`,
`sandbox_process`, `measures`, `runners`, `cli_start`, `scenarios`, `verdicts`, `render`,
`gil_profile`); the scripts `timed_sandbox.py`, `handwritten.py`, `raw_load.py` and
`http_ceiling.py` are the separate processes it starts, and `limiter_check.py` runs on its own.
"""
