"""Shared infrastructure: configs, checkpoints, metrics, plots, sharding, registry and reports."""
