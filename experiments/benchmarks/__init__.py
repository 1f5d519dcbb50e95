"""Benchmark scripts: each prints a table and writes JSON, measuring the peers in the same run
and compile time apart. What each measures and the figures it gave: README.md (its map of the
house points to each) and docs/speed.md. What the scripts share lives in
``experiments/benchmarks/common.py`` (no script imports another); the settings they tune live
in ``jaxmarl_coop.presets``."""
