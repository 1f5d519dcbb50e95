"""Experiments: benchmark and study scripts (run from the repository root)."""
