"""Runs as a library: build a run from names, train it into a run folder, load it back.

    from jaxmarl_coop.runs import RunConfig, run, load_run, load_policy

    result = run(RunConfig(learner="mappo", env="spread-v3", env_steps=200_000))
    data = load_run(result.path)                       # metrics and evaluation, no JAX
    policy, env, env_params = load_policy(result.path, which="best", seed=0)

Parts: :mod:`~jaxmarl_coop.runs.config` (``RunConfig``, presets), :mod:`~.training` (the
chunked loop, evaluation, checkpoints), :mod:`~.folder` (the run folder's files and format
version: writer and reader), :mod:`~.resume` (what a resume checks, and extending a run),
:mod:`~.team` (a trained team from a folder), :mod:`~.io` (atomic writes).
"""

from jaxmarl_coop.runs.config import (
    RunConfig,
    UsageError,
    parse_pairs,
    parse_value,
    preset,
    preset_names,
)
from jaxmarl_coop.runs.folder import FORMAT_VERSION, RunData, load_run
from jaxmarl_coop.runs.io import (
    _jsonable,
    mean_ci95,
    write_bytes_atomic,
    write_json_atomic,
    write_text_atomic,
)

__all__ = ["FORMAT_VERSION", "RunConfig", "RunData", "RunResult", "UsageError", "_jsonable",
           "build", "load_policy", "load_run", "load_run_config", "load_team", "mean_ci95",
           "parse_pairs", "parse_value", "preset", "preset_names", "run", "write_bytes_atomic",
           "write_json_atomic", "write_text_atomic"]

_LAZY = {"run": "training", "RunResult": "training", "build": "training",
         "load_run_config": "training", "Run": "training", "load_policy": "team",
         "load_team": "team"}


def __getattr__(name: str):  # the JAX-heavy parts load on first use (plots need none)
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"jaxmarl_coop.runs.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'jaxmarl_coop.runs' has no attribute {name!r}")
