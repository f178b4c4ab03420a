"""Entry points: the `routera-archive` CLI, the pipeline factory and scheduling examples."""
