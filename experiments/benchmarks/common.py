"""Pieces the learning benchmarks share: summaries over seeds, binned curves, formatting,
greedy evaluation of several policies, compile timing."""

from __future__ import annotations

import itertools
import math
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxmarl_coop.learners.evaluation import evaluate
from jaxmarl_coop.runs import mean_ci95


def log(msg: str) -> None:
    """Progress on stderr (stdout carries the tables)."""
    print(msg, file=sys.stderr, flush=True)


def ci(values: Any) -> dict[str, Any]:
    """Mean, 95% CI half-width over the first axis (seeds), and the per-seed values."""
    arr = np.asarray(values, dtype=np.float64)
    per_seed = arr.reshape(len(arr), -1).mean(axis=1)
    mean, half = mean_ci95(per_seed)
    return {"mean": mean, "ci95": half, "per_seed": per_seed}


def fmt(value: float | None, spec: str) -> str:
    """``format(value, spec)``, or ``-`` for None / NaN."""
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else format(value, spec)


def pm(stats: dict[str, Any] | None, spec: str = ".2f") -> str:
    """``mean ± ci95`` of a :func:`ci` summary."""
    if not stats:
        return "-"
    return f"{fmt(stats['mean'], spec)} ± {fmt(stats['ci95'], spec)}"


def compile_timed(fn: Callable[..., Any], *args: Any) -> tuple[Any, dict[str, float]]:
    """``jax.jit(fn)`` lowered and compiled for ``args`` (the wait before the first step)."""
    t0 = time.perf_counter()
    lowered = jax.jit(fn).lower(*args)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    return compiled, {"lower_s": t1 - t0, "compile_s": t2 - t1, "trace_and_compile_s": t2 - t0}


def evaluate_policies(env: Any, params: Any,
                      policies: dict[str, tuple[Callable[[Any], Any], Any]],
                      keys: jax.Array, episodes: int) -> dict[str, dict[str, Any]]:
    """Per policy ``(make_policy, per-seed args)``: ``episodes`` whole episodes for every seed
    (one vmapped call per policy), each figure summarised over seeds."""
    out = {}
    for name, (make_policy, per_seed_args) in policies.items():
        def run(arg: Any, key: jax.Array, make_policy=make_policy) -> dict[str, jax.Array]:
            return evaluate(env, params, make_policy(arg), key, episodes)

        t0 = time.perf_counter()
        figures = jax.device_get(jax.jit(jax.vmap(run))(per_seed_args, keys))
        figures.pop("agent_returns")
        out[name] = {k: ci(np.asarray(v, np.float64)) for k, v in figures.items()}
        out[name]["episodes_per_seed"] = episodes
        out[name]["wall_s"] = time.perf_counter() - t0
    return out


def learning_curve(x: np.ndarray, y: np.ndarray, points: int = 200) -> dict[str, Any]:
    """Bin per-update values ``y`` (seeds, updates) into ``points`` bins: mean ± 95% CI over
    seeds, and each seed's binned curve."""
    edges = np.linspace(0, y.shape[1], min(points, y.shape[1]) + 1).astype(int)
    xs, means, halves, seeds = [], [], [], []
    for lo, hi in itertools.pairwise(edges):
        if hi <= lo:
            continue
        with warnings.catch_warnings():  # an all-NaN bin (no episode ended) stays NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            per_seed = np.nanmean(y[:, lo:hi], axis=1)
        finite = per_seed[np.isfinite(per_seed)]
        if len(finite) == 0:
            continue
        mean, half = mean_ci95(finite)
        xs.append(float(x[hi - 1]))
        means.append(mean)
        halves.append(half)
        seeds.append(per_seed)
    return {"env_steps": xs, "mean": means, "ci95": halves,
            "per_seed": np.asarray(seeds).T if seeds else []}


def git_commit(repo: Path) -> str | None:
    """The checked-out commit of ``repo`` (None if it is not a git checkout)."""
    try:
        return subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
