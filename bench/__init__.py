"""Benchmarks of the connector against the ideal, the hand-written loop and a raw dlt load.

`run_bench.py` is the entry point; the other modules are the separate processes it starts.
"""
