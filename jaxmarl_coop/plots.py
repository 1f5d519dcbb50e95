"""Aggregate run folders over seeds, plot and tabulate (the folders are read by
``jaxmarl_coop.runs.folder.load_run``, the one reader of the format).

Works on the files alone (no JAX): ``config.json``, ``metrics.csv`` (one row per seed and
update) and, for a finished run, ``eval.json``.

    run = load_run("runs/mappo-tracking-v1-20261126-101500")
    plot_curves([run], metric="episode_return", stat="iqm", path="curve.png")
    print(summary_table([run]))

Seeds are the unit of replication: :func:`aggregate` summarises over axis 0 with either the
mean and a Student-t interval, or the interquartile mean (IQM) and rliable's stratified
bootstrap interval over seeds (Agarwal et al. 2021, "Deep RL at the edge of the statistical
precipice"). :func:`compare` summarises several algorithms over several tasks as the
cooperative-MARL evaluation protocol does (Gorsane et al. 2022): IQM of normalised scores,
probability of improvement, performance profiles.
"""

from __future__ import annotations

import contextlib
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
    ``stat="iqm"``: the interquartile mean (mean of the middle half of the seeds) with
    rliable's stratified percentile-bootstrap interval (``num_bootstrap`` resamplings of the
    seeds within each column; deterministic given ``seed``). Needs ``rliable``
    (``pip install 'jaxmarl_coop[stats]'``).
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
        rly = _rliable()
        ordered = np.sort(flat, axis=0)  # NaNs last: column j's values are its first n[j]
        for count in np.unique(n[n > 0]).tolist():
            cols = np.flatnonzero(n == count)
            present = ordered[:count, cols]  # (runs, columns): columns are rliable's tasks
            center[cols] = _trimmed_mean(present, count, axis=0)
            # rliable's stratified bootstrap: the runs resampled within each column
            boot = rly.library.StratifiedBootstrap(present)
            with _seeded(seed):
                interval = boot.conf_int(
                    lambda x, count=count: _trimmed_mean(np.sort(x, axis=0), count, axis=0),
                    reps=num_bootstrap, size=confidence, method="percentile")
            low[cols], high[cols] = interval[0], interval[1]
    return center.reshape(shape), low.reshape(shape), high.reshape(shape)


def _rliable() -> Any:
    """rliable (imported on first use: it brings arch, pandas and seaborn)."""
    try:
        import rliable.library
        import rliable.metrics
    except ImportError as err:
        raise ImportError("IQM intervals and --compare use rliable: pip install "
                          "'jaxmarl_coop[stats]'") from err
    return rliable


@contextlib.contextmanager
def _seeded(seed: int) -> Any:
    """numpy's global generator seeded for the block, then restored: rliable's bootstraps
    draw their resamples from it (``np.random.choice``), so this makes them deterministic."""
    saved = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(saved)


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



# --------------------------------------------------------------------------------------------
# several algorithms over several tasks
# --------------------------------------------------------------------------------------------
def compare(runs: Sequence[RunData | str | os.PathLike[str]], labels: Sequence[str] | None = None,
            reps: int = 2000, seed: int = 0, confidence: float = 0.95,
            profile_points: int = 51) -> dict[str, Any]:
    """Algorithms (the runs' learners, or ``labels``, one per run) over tasks (the runs'
    envs), from each seed's final greedy return (eval.json ``final.return.per_seed``).

    Scores are min-max normalised per task over every seed of every algorithm given (0: the
    worst seed on that task, 1: the best). Each algorithm needs the same number of seeds on
    every task (several run folders of one algorithm and task are pooled). Returns, with
    rliable's stratified-bootstrap intervals (``reps``, ``seed``): per algorithm the IQM and
    the mean of the normalised scores, the probability of improvement of every ordered pair,
    and performance profiles (fraction of runs above each threshold in [0, 1]).
    """
    rly = _rliable()
    loaded = _as_runs(runs)
    if labels is not None and len(labels) != len(loaded):
        raise ValueError(f"{len(labels)} labels for {len(loaded)} runs; give one per run")
    pooled: dict[str, dict[str, list[float]]] = {}
    for i, run in enumerate(loaded):
        if run.eval is None:
            raise ValueError(f"{run.path}: no eval.json (the run has not finished)")
        name = labels[i] if labels is not None else run.learner
        per_seed = run.eval["final"]["return"]["per_seed"]
        pooled.setdefault(name, {}).setdefault(run.env, []).extend(map(float, per_seed))
    algorithms = sorted(pooled)
    if len(algorithms) < 2:
        raise ValueError(f"--compare needs at least 2 algorithms, got {algorithms}")
    tasks = sorted({t for per_task in pooled.values() for t in per_task})
    for a in algorithms:
        missing = [t for t in tasks if t not in pooled[a]]
        if missing:
            raise ValueError(f"{a} has no run on {', '.join(missing)}: every algorithm needs "
                             "every task")
        counts = {len(pooled[a][t]) for t in tasks}
        if len(counts) > 1:
            raise ValueError(f"{a} has {sorted(counts)} seeds on different tasks; give every "
                             "task the same number of seeds")
    low = {t: min(min(pooled[a][t]) for a in algorithms) for t in tasks}
    high = {t: max(max(pooled[a][t]) for a in algorithms) for t in tasks}
    scores = {a: np.stack([(np.asarray(pooled[a][t]) - low[t])
                           / ((high[t] - low[t]) or 1.0) for t in tasks], axis=1)
              for a in algorithms}  # (runs, tasks)
    def interval(score_dict: dict[str, Any], func: Any) -> dict[str, dict[str, float]]:
        out = {}
        for k, data in score_dict.items():
            data = data if isinstance(data, tuple) else (data,)
            boot = (rly.library.StratifiedBootstrap if len(data) == 1
                    else rly.library.StratifiedIndependentBootstrap)(*data)
            with _seeded(seed):
                ci = boot.conf_int(func, reps=reps, size=confidence, method="percentile")
            out[k] = {"value": float(np.squeeze(func(*data))), "low": float(ci[0][0]),
                      "high": float(ci[1][0])}
        return out

    iqm = interval(scores, lambda x: np.array([rly.metrics.aggregate_iqm(x)]))
    mean = interval(scores, lambda x: np.array([rly.metrics.aggregate_mean(x)]))
    pairs = {f"{x} > {y}": (scores[x], scores[y]) for x in algorithms for y in algorithms
             if x != y}
    improvement = interval(pairs, lambda x, y: np.array(
        [rly.metrics.probability_of_improvement(x, y)]))
    taus = np.linspace(0.0, 1.0, profile_points)
    with _seeded(seed):
        profile, profile_ci = rly.library.create_performance_profile(
            scores, taus, reps=min(reps, 2000), confidence_interval_size=confidence)
    return {"algorithms": algorithms, "tasks": tasks,
            "normalisation": {"method": "min-max per task over every seed given",
                              "low": low, "high": high},
            "seeds": {a: int(scores[a].shape[0]) for a in algorithms},
            "iqm": iqm, "mean": mean, "probability_of_improvement": improvement,
            "performance_profile": {"tau": taus.tolist(),
                                    **{a: {"fraction": np.asarray(profile[a]).tolist(),
                                           "low": np.asarray(profile_ci[a][0]).tolist(),
                                           "high": np.asarray(profile_ci[a][1]).tolist()}
                                       for a in algorithms}},
            "interval": f"{confidence:.0%} stratified bootstrap (rliable), {reps} resamples"}


def compare_table(result: dict[str, Any]) -> str:
    """The result of :func:`compare` as text: IQM and mean per algorithm, then every pair's
    probability of improvement."""
    def cell(e: dict[str, float]) -> str:
        return f"{e['value']:.3f} [{e['low']:.3f}, {e['high']:.3f}]"

    lines = [f"normalised final greedy return over {len(result['tasks'])} task(s): "
             f"{', '.join(result['tasks'])} ({result['interval']})",
             f"{'algorithm':<16} {'IQM':>24} {'mean':>24} seeds"]
    for a in result["algorithms"]:
        lines.append(f"{a:<16} {cell(result['iqm'][a]):>24} {cell(result['mean'][a]):>24} "
                     f"{result['seeds'][a]}")
    lines.append("probability of improvement P(X > Y):")
    for pair, e in result["probability_of_improvement"].items():
        lines.append(f"  {pair:<30} {cell(e)}")
    return "\n".join(lines)


def plot_compare(result: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Performance profiles (with bands) and probability-of-improvement bars, one PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2)
    taus = np.asarray(result["performance_profile"]["tau"])
    for a in result["algorithms"]:
        prof = result["performance_profile"][a]
        left.plot(taus, prof["fraction"], label=a)
        left.fill_between(taus, prof["low"], prof["high"], alpha=0.2)
    left.set_xlabel("normalised score τ")
    left.set_ylabel("fraction of runs with score > τ")
    left.set_title("performance profiles")
    left.legend(fontsize="small")
    left.grid(alpha=0.3)
    pairs = list(result["probability_of_improvement"].items())
    y = np.arange(len(pairs))
    values = np.array([e["value"] for _, e in pairs])
    err = np.array([[e["value"] - e["low"] for _, e in pairs],
                    [e["high"] - e["value"] for _, e in pairs]])
    right.barh(y, values, xerr=err, capsize=3)
    right.axvline(0.5, color="grey", linestyle="--")
    right.set_yticks(y, [p for p, _ in pairs], fontsize="small")
    right.set_xlim(0, 1)
    right.set_xlabel("P(X > Y)")
    right.set_title("probability of improvement")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return write_bytes_atomic(path, buf.getvalue())
