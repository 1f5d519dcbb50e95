"""Aggregate run folders over seeds, plot and tabulate (the folders are read by
``jaxmarl_coop.runs.folder.load_run``, the one reader of the format).

Works on the files alone (no JAX): ``config.json``, ``metrics.csv`` (one row per seed and
update) and, for a finished run, ``eval.json``.

    run = load_run("runs/mappo-tracking-v1-20261126-101500")
    plot_curves([run], metric="episode_return", stat="iqm", path="curve.png")
    print(summary_table([run]))

Seeds are the unit of replication: :func:`aggregate` summarises over axis 0 with either the
mean and a Student-t interval, or the interquartile mean (IQM) and a percentile bootstrap
interval over seeds (Agarwal et al. 2021, "Deep RL at the edge of the statistical
precipice").
"""

from __future__ import annotations

import io
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jaxmarl_coop.runs.folder import RunData, load_run
from jaxmarl_coop.runs.io import write_bytes_atomic

#: statistics :func:`aggregate` knows
STATS = ("mean", "iqm")
_STAT_LABELS = {"mean": "mean", "iqm": "IQM"}


def _t_quantile(p: float, df: np.ndarray) -> np.ndarray:
    from scipy.special import stdtrit  # scipy comes with jax; imported only when needed

    return np.asarray(stdtrit(df, p), dtype=np.float64)


def _trimmed_mean(sorted_values: np.ndarray, n: int, axis: int) -> np.ndarray:
    """Interquartile mean of ``n`` values already sorted along ``axis``: drop the lowest and
    the highest ``floor(n / 4)``, average the rest (``scipy.stats.trim_mean(x, 0.25)``)."""
    cut = n // 4
    return np.take(sorted_values, np.arange(cut, n - cut), axis=axis).mean(axis=axis)


def aggregate(values: Any, stat: str = "mean", confidence: float = 0.95,
              num_bootstrap: int = 2000, seed: int = 0
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(center, low, high)`` of ``values`` over axis 0 (seeds), each of shape
    ``values.shape[1:]`` (0-d arrays for a 1-d input). NaNs are ignored column by column;
    a column with no value gives NaN, and the interval needs two values.

    ``stat="mean"``: the mean with a two-sided Student-t interval at ``confidence``.
    ``stat="iqm"``: the interquartile mean (mean of the middle half of the seeds) with a
    percentile bootstrap interval from ``num_bootstrap`` resamplings of the seeds with
    replacement (the same resampled seeds for every column with the same seeds present;
    deterministic given ``seed``).
    """
    if stat not in STATS:
        raise ValueError(f"unknown stat {stat!r}; choose from {', '.join(map(repr, STATS))}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 0:
        raise ValueError("aggregate needs values with a seed axis (axis 0), got a scalar")
    shape = arr.shape[1:]
    flat = arr.reshape(arr.shape[0], -1)
    valid = ~np.isnan(flat)
    n = valid.sum(axis=0)
    center = np.full(flat.shape[1], np.nan)
    low, high = center.copy(), center.copy()
    if stat == "mean":
        some, two = n > 0, n > 1
        total = np.where(valid, flat, 0.0).sum(axis=0)
        center[some] = total[some] / n[some]
        dev = np.where(valid, flat - center, 0.0)
        var = (dev ** 2).sum(axis=0)[two] / (n[two] - 1)
        half = _t_quantile((1 + confidence) / 2, n[two] - 1) * np.sqrt(var / n[two])
        low[two], high[two] = center[two] - half, center[two] + half
    else:
        if num_bootstrap < 1:
            raise ValueError(f"num_bootstrap must be >= 1, got {num_bootstrap!r}")
        rng = np.random.default_rng(seed)
        ordered = np.sort(flat, axis=0)  # NaNs last: column j's values are its first n[j]
        quantiles = [(1 - confidence) / 2, (1 + confidence) / 2]
        for count in np.unique(n[n > 0]).tolist():
            cols = np.flatnonzero(n == count)
            present = ordered[:count, cols]
            center[cols] = _trimmed_mean(present, count, axis=0)
            idx = rng.integers(0, count, size=(num_bootstrap, count))
            step = max(1, 4_000_000 // (num_bootstrap * count))  # bound the memory
            for start in range(0, len(cols), step):
                block = np.sort(present[:, start:start + step][idx], axis=1)
                boot = _trimmed_mean(block, count, axis=1)  # (num_bootstrap, block columns)
                lo, hi = np.quantile(boot, quantiles, axis=0)
                low[cols[start:start + step]], high[cols[start:start + step]] = lo, hi
    return center.reshape(shape), low.reshape(shape), high.reshape(shape)


def _bin(values: np.ndarray, steps: np.ndarray, points: int) -> tuple[np.ndarray, np.ndarray]:
    """Average consecutive updates into at most ``points`` bins, within each seed (NaNs
    ignored; a bin with no value is NaN). Returns (binned values, mean env steps per bin)."""
    updates = values.shape[1]
    if points < 1 or updates <= points:
        return values, steps.astype(np.float64)
    starts = np.linspace(0, updates, points + 1).astype(np.int64)[:-1]
    finite = ~np.isnan(values)
    sums = np.add.reduceat(np.where(finite, values, 0.0), starts, axis=1)
    counts = np.add.reduceat(finite.astype(np.int64), starts, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        binned = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    x = np.add.reduceat(steps.astype(np.float64), starts) / np.diff(np.append(starts, updates))
    return binned, x


def _as_runs(runs: Sequence[RunData | str | os.PathLike[str]] | RunData) -> list[RunData]:
    if isinstance(runs, (RunData, str, os.PathLike)):
        runs = [runs]
    loaded = [r if isinstance(r, RunData) else load_run(r) for r in runs]
    if not loaded:
        raise ValueError("no runs given")
    return loaded


def check_metric(runs: Sequence[RunData], metric: str) -> None:
    """``ValueError`` naming the run and the metrics it has when one lacks ``metric``."""
    for run in runs:
        if metric not in run.metrics:
            raise ValueError(f"unknown metric {metric!r} for run {run.name}; available: "
                             f"{', '.join(sorted(run.metrics))}")


def _reference_lines(runs: Sequence[RunData], metric: str) -> dict[str, float]:
    """Reference policies' evaluation return means from the runs' eval.json (only for the
    training return, the same quantity); a name with different values per run gets the
    run's name appended."""
    if metric != "episode_return":
        return {}
    found: dict[str, list[tuple[str, float]]] = {}
    for run in runs:
        refs = (run.eval or {}).get("references") or {}
        for name, metrics in refs.items():
            try:
                value = float(metrics["return"]["mean"])
            except (KeyError, TypeError, ValueError):
                continue
            found.setdefault(name, []).append((run.name, value))
    out = {}
    for name, entries in found.items():
        if len({v for _, v in entries}) == 1:
            out[name] = entries[0][1]
        else:
            out.update({f"{name} ({run_name})": v for run_name, v in entries})
    return out


def plot_curves(runs: Sequence[RunData | str | os.PathLike[str]] | RunData,
                metric: str = "episode_return", stat: str = "mean",
                references: Mapping[str, float] | None = None,
                path: str | os.PathLike[str] | None = None,
                labels: Sequence[str] | None = None, title: str | None = None,
                points: int = 200) -> Any:
    """A matplotlib ``Figure`` of ``metric`` against env steps per seed: per run the
    ``stat`` over seeds (see :func:`aggregate`) and its 95% band.

    Curves longer than ``points`` updates are first averaged into ``points`` bins within
    each seed. ``references`` maps a name to a value drawn as a dashed horizontal line; when
    None and ``metric`` is ``episode_return``, the runs' eval.json reference policies'
    greedy returns are drawn. ``path``: the figure is also saved there, atomically (format
    from the suffix, PNG by default). Runs may be given as run folders.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if stat not in STATS:
        raise ValueError(f"unknown stat {stat!r}; choose from {', '.join(map(repr, STATS))}")
    loaded = _as_runs(runs)
    if labels is not None and len(labels) != len(loaded):
        raise ValueError(f"{len(labels)} labels for {len(loaded)} runs")
    check_metric(loaded, metric)
    fig = Figure(figsize=(7.5, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for i, run in enumerate(loaded):
        label = labels[i] if labels is not None else run.name
        values, x = _bin(run.metrics[metric], run.env_steps, points)
        center, low, high = aggregate(values, stat)
        color = f"C{i % 10}"
        ax.plot(x, center, color=color, lw=1.6,
                label=f"{label} ({run.num_seeds} seed{'s' if run.num_seeds != 1 else ''})")
        ax.fill_between(x, low, high, color=color, alpha=0.2, lw=0)
    refs = dict(references) if references is not None else _reference_lines(loaded, metric)
    for j, (name, value) in enumerate(refs.items()):
        ax.axhline(float(value), color=f"C{(len(loaded) + j) % 10}", ls="--", lw=1.2,
                   label=name)
    ax.set_xlabel("env steps per seed")
    interval = "Student-t" if stat == "mean" else "bootstrap"
    ax.set_ylabel(f"{metric} ({_STAT_LABELS[stat]} over seeds, 95% {interval} CI)")
    envs = sorted({run.env for run in loaded})
    ax.set_title(title if title is not None else ", ".join(envs))
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    if path is not None:
        path = Path(path)
        fmt = path.suffix.lstrip(".").lower() or "png"
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, dpi=120)
        write_bytes_atomic(path, buf.getvalue())
    return fig


def _fmt_num(value: float) -> str:
    if not math.isfinite(value):
        return "nan"
    return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.4e}"


def _fmt_interval(center: float, low: float, high: float) -> str:
    if math.isnan(low) or math.isnan(high):
        return _fmt_num(center)
    return f"{_fmt_num(center)} [{_fmt_num(low)}, {_fmt_num(high)}]"


def _fmt_eval(ev: dict[str, Any] | None, section: str) -> str:
    try:
        entry = ev[section]["return"]  # type: ignore[index]
        mean, ci = float(entry["mean"]), float(entry["ci95"])
    except (KeyError, TypeError, ValueError):
        return "-"
    return f"{_fmt_num(mean)} ± {_fmt_num(ci)}" if math.isfinite(ci) else _fmt_num(mean)


def summary_table(runs: Sequence[RunData | str | os.PathLike[str]] | RunData,
                  metric: str = "episode_return", stat: str = "mean") -> str:
    """A plain-text table, one row per run: name, learner, env, seeds, env steps per seed
    (of planned, if unfinished), ``metric`` over the last 5% of updates (per seed the mean
    over those updates, then ``stat`` over seeds with its 95% interval), and, if eval.json
    exists, the greedy evaluation return of the final and the best ("absolute") parameters
    (mean ± 95% CI over seeds)."""
    if stat not in STATS:
        raise ValueError(f"unknown stat {stat!r}; choose from {', '.join(map(repr, STATS))}")
    loaded = _as_runs(runs)
    check_metric(loaded, metric)
    header = ["run", "learner", "env", "seeds", "env steps/seed",
              f"{metric} last 5% ({_STAT_LABELS[stat]} [95% CI])",
              "eval final", "eval absolute"]
    rows = []
    for run in loaded:
        values = run.metrics[metric]
        tail = max(1, math.ceil(0.05 * values.shape[1]))
        with warnings.catch_warnings():  # an all-NaN seed: NaN, ignored by aggregate
            warnings.simplefilter("ignore", RuntimeWarning)
            per_seed = np.nanmean(values[:, -tail:], axis=1)
        center, low, high = (float(v) for v in aggregate(per_seed, stat))
        steps = f"{int(run.env_steps[-1]):,}"
        planned = run.planned_env_steps
        if planned is not None and planned > run.env_steps[-1]:
            steps += f" of {planned:,}"
        rows.append([run.name, run.learner, run.env, str(run.num_seeds), steps,
                     _fmt_interval(center, low, high), _fmt_eval(run.eval, "final"),
                     _fmt_eval(run.eval, "absolute")])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    right = {3, 4}

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])

