"""Scheduling examples: Airflow, Dagster and GitHub Actions, each fanning out shard workers."""
