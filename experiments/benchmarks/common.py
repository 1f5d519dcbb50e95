"""What the benchmark scripts share, so that each script holds only its study: progress and
summaries over seeds, tables, the machine and its CPU load, compile and run timing, the
auto-reset rollout that the throughput studies time, results.json (header, atomic saves),
greedy evaluation and learning curves, and JaxMARL's baseline scripts loaded unmodified from
a checkout. The tuned settings the studies run with live in :mod:`jaxmarl_coop.presets`."""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import faulthandler
import importlib.util
import io
import itertools
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxmarl_coop.learners.evaluation import evaluate
from jaxmarl_coop.runs.io import mean_ci95, write_json_atomic
from jaxmarl_coop.runs.io import write_bytes_atomic as write_bytes_atomic  # re-exported

CpuSample = tuple[int, int, int]


# --------------------------------------------------------------------------------------------
# progress, summaries over seeds, tables
# --------------------------------------------------------------------------------------------
def log(msg: str) -> None:
    """Progress on stderr (stdout carries the tables)."""
    print(msg, file=sys.stderr, flush=True)


def ci(values: Any) -> dict[str, Any]:
    """Mean, 95% CI half-width over the first axis (seeds), and the per-seed values."""
    arr = np.asarray(values, dtype=np.float64)
    per_seed = arr.reshape(len(arr), -1).mean(axis=1)
    mean, half = mean_ci95(per_seed)
    return {"mean": mean, "ci95": half, "per_seed": per_seed}


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a binomial fraction."""
    if n == 0:
        return float("nan"), float("nan")
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def fmt(value: float | None, spec: str) -> str:
    """``format(value, spec)``, or ``-`` for None / NaN."""
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else format(value, spec)


def pm(stats: dict[str, Any] | None, spec: str = ".2f") -> str:
    """``mean ± ci95`` of a :func:`ci` summary."""
    if not stats:
        return "-"
    return f"{fmt(stats['mean'], spec)} ± {fmt(stats['ci95'], spec)}"


def fraction_ci(fraction: float, interval: Sequence[float], spec: str = ".2f") -> str:
    """``0.50 [0.24, 0.76]``: a fraction and its interval (e.g. :func:`wilson`'s)."""
    lo, hi = interval
    return f"{fraction:{spec}} [{lo:{spec}}, {hi:{spec}}]"


#: the game and k columns' head in a matrix-game table (:func:`game_cells`)
GAME_HEAD = f"{'game':<12} {'k':>5}"


def game_cells(row: dict[str, Any]) -> str:
    """A matrix-game table row's game id and penalty ``k`` (``-`` for a game without one)."""
    return f"{row['game']:<12} {fmt(row['k'], '.0f'):>5}"


def table(header: str, lines: Iterable[str]) -> str:
    """A printed table: ``header``, a rule of dashes as wide as it, then one line per row."""
    return "\n".join([header, "-" * len(header), *lines])


# --------------------------------------------------------------------------------------------
# the machine
# --------------------------------------------------------------------------------------------
def dist_version(name: str) -> str | None:
    """The installed version of distribution ``name`` (None if it is not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def jax_versions() -> dict[str, Any]:
    """jax and jaxlib versions and the default backend."""
    import jaxlib

    return {"jax_version": jax.__version__, "jaxlib_version": jaxlib.__version__,
            "backend": jax.default_backend()}


def jaxmarl_version() -> str:
    """JaxMARL's version: its distribution's, else its module's ``__version__`` (importing
    it: ImportError when it is missing)."""
    found = dist_version("jaxmarl")
    if found is not None:
        return found
    import jaxmarl

    return str(getattr(jaxmarl, "__version__", "unknown"))


def machine_info() -> dict[str, Any]:
    """CPU model, core counts, load, Python/JAX versions and devices."""
    cpu_model = platform.processor() or None
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {"cpu_model": cpu_model, "cpu_count": os.cpu_count(), "usable_cores": usable,
            "loadavg_start": list(os.getloadavg()), "other_cpu_busy_start": other_cpu_busy(),
            "platform": platform.platform(),
            "python": platform.python_version(), "numpy_version": np.__version__,
            **jax_versions(), "devices": [str(d) for d in jax.devices()],
            "xla_flags": os.environ.get("XLA_FLAGS", "")}


def machine_summary(machine: dict[str, Any], total_wall_s: float | None = None,
                    device: bool = False) -> str:
    """One line for the end of a report: CPU, cores, backend (and with ``device`` the device
    kind, ``machine["device_kind"]``, and the devices), jax, the CPU share other processes
    took before and after, and the run's total wall time."""
    m = machine
    where = f", device {m['device_kind']} ({', '.join(m['devices'])})" if device else ""
    total = f"; total {total_wall_s:.0f} s" if total_wall_s is not None else ""
    return (f"machine: {m['cpu_model']}, {m['usable_cores']} cores, backend {m['backend']}"
            f"{where}, jax {m['jax_version']}; CPUs busy with other processes: "
            f"{fmt(m.get('other_cpu_busy_start'), '.0%')} before, "
            f"{fmt(m.get('other_cpu_busy_end'), '.0%')} after{total}")


# --------------------------------------------------------------------------------------------
# CPU load: what other processes take while we time
# --------------------------------------------------------------------------------------------
def cpu_sample(proc: str | os.PathLike[str] = "/proc") -> CpuSample | None:
    """(all CPUs' ticks, idle ticks, this process's ticks) from ``proc`` (``/proc``), or None
    where it cannot be read."""
    try:
        with open(Path(proc) / "stat") as fh:
            values = [int(v) for v in fh.readline().split()[1:]]
        with open(Path(proc) / "self" / "stat") as fh:
            own = fh.read().rsplit(")", 1)[1].split()  # after the command name "(...)"
        return sum(values), values[3] + values[4], int(own[11]) + int(own[12])
    except (OSError, ValueError, IndexError):
        return None


def others_busy(start: CpuSample | None, end: CpuSample | None) -> float | None:
    """Fraction of all CPUs that *other* processes used between two :func:`cpu_sample`\\ s."""
    if start is None or end is None or end[0] <= start[0]:
        return None
    total = end[0] - start[0]
    busy = total - (end[1] - start[1]) - (end[2] - start[2])
    return min(1.0, max(0.0, busy / total))


def own_cores(start: CpuSample | None, end: CpuSample | None, wall_s: float) -> float | None:
    """Cores this process kept busy on average over ``wall_s`` (JAX may use several)."""
    if start is None or end is None or wall_s <= 0:
        return None
    return (end[2] - start[2]) / os.sysconf("SC_CLK_TCK") / wall_s


def other_cpu_busy(seconds: float = 0.5) -> float | None:
    """Share of the CPUs other processes keep busy over ``seconds`` (this one excluded)."""
    start = cpu_sample()
    time.sleep(seconds)
    return others_busy(start, cpu_sample())


# --------------------------------------------------------------------------------------------
# timing: compile apart, then timed runs
# --------------------------------------------------------------------------------------------
def compile_timed(fn: Callable[..., Any], *args: Any) -> tuple[Any, dict[str, float]]:
    """``jax.jit(fn)`` lowered and compiled for ``args`` (the wait before the first step)."""
    t0 = time.perf_counter()
    lowered = jax.jit(fn).lower(*args)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    return compiled, {"lower_s": t1 - t0, "compile_s": t2 - t1, "trace_and_compile_s": t2 - t0}


def timed_call(compiled: Any, *args: Any) -> float:
    """Wall seconds of one call of ``compiled``, until its outputs are ready."""
    t0 = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    return time.perf_counter() - t0


def timed_run(compiled: Any, *args: Any, hang_timeout_s: float | None = None
              ) -> tuple[Any, dict[str, Any]]:
    """One call of ``compiled``: its outputs, and its wall time with the CPU share other
    processes took meanwhile. With ``hang_timeout_s``, a call running longer makes the
    process dump every thread's stack and exit (a deadlock ends with a trace)."""
    cpu0, t0 = cpu_sample(), time.perf_counter()
    if hang_timeout_s is not None:
        faulthandler.dump_traceback_later(hang_timeout_s, exit=True)
    try:
        out = jax.block_until_ready(compiled(*args))
    finally:
        if hang_timeout_s is not None:
            faulthandler.cancel_dump_traceback_later()
    wall = time.perf_counter() - t0
    cpu1 = cpu_sample()
    return out, {"run_s": wall, "other_cpu_busy": others_busy(cpu0, cpu1),
                 "own_cores_used": own_cores(cpu0, cpu1, wall)}


def timed_repeats(compiled: Any, args_of: Callable[[int], tuple[Any, ...]], repeats: int
                  ) -> dict[str, Any]:
    """``repeats`` timed calls ``compiled(*args_of(i))``: their times, the median, and the
    CPU share other processes took (and the cores this one used) over them all."""
    cpu0 = cpu_sample()
    runs = [timed_call(compiled, *args_of(i)) for i in range(repeats)]
    cpu1 = cpu_sample()
    return {"run_s": runs, "median_run_s": statistics.median(runs),
            "other_cpu_busy": others_busy(cpu0, cpu1),
            "own_cores_used": own_cores(cpu0, cpu1, sum(runs))}


def timed_train(fn: Callable[..., Any], *args: Any) -> tuple[Any, dict[str, Any]]:
    """``jax.jit(fn)`` compiled for ``args`` (timed apart), then one timed call, with the
    CPU share other processes took meanwhile."""
    compiled, timing = compile_timed(fn, *args)
    out, run = timed_run(compiled, *args)
    return out, {**timing, **run}


def add_throughput(timing: dict[str, Any], seeds: int, steps_per_seed: int) -> dict[str, Any]:
    """Env steps per second over all seeds and per seed, from ``timing["run_s"]``."""
    timing.update(seeds=seeds, env_steps_per_seed=steps_per_seed,
                  env_steps_per_s=seeds * steps_per_seed / timing["run_s"],
                  env_steps_per_s_per_seed=steps_per_seed / timing["run_s"])
    return timing


# --------------------------------------------------------------------------------------------
# the auto-reset rollout of random actions (env_throughput, scaling)
# --------------------------------------------------------------------------------------------
PROBE_STEPS = 64  # at least; small batches probe with ~PROBE_ENV_STEPS env steps
PROBE_ENV_STEPS = 1 << 16
QUICK_STEPS = 32  # --quick: this T, no calibration
MAX_STEPS = 1 << 20


def random_rollout(reset: Callable[..., tuple[Any, jax.Array]],
                   step: Callable[..., tuple[Any, jax.Array]], steps: int, batch: int,
                   num_agents: int, num_actions: int) -> Callable[..., tuple[Any, jax.Array]]:
    """``rollout(key, *args) -> (final state, checksum)``: ``reset(key, *args) -> (state,
    checksum)``, then ``steps`` steps ``step(key, state, actions, *args) -> (state,
    checksum)`` of uniformly random ``(batch, num_agents)`` int32 actions, in one
    ``lax.scan``.

    The actions are drawn inside the scan, and the checksums (of each step's observations,
    rewards and done flags) are summed, so that XLA cannot drop any of them (a policy would
    read them all). Ours and the peers are timed with this same loop."""
    def rollout(key: jax.Array, *args: Any) -> tuple[Any, jax.Array]:
        key, k_reset = jax.random.split(key)
        state, acc0 = reset(k_reset, *args)

        def body(carry: tuple[Any, jax.Array, jax.Array], _: None
                 ) -> tuple[tuple[Any, jax.Array, jax.Array], None]:
            state, key, acc = carry
            key, k_act, k_step = jax.random.split(key, 3)
            actions = jax.random.randint(k_act, (batch, num_agents), 0, num_actions,
                                         dtype=jnp.int32)
            state, checksum = step(k_step, state, actions, *args)
            return (state, key, acc + checksum), None

        (state, _, acc), _ = jax.lax.scan(body, (state, key, acc0), None, length=steps)
        return state, acc

    return rollout


def ours_rollout(env_id: str, batch: int, **env_kwargs: Any
                 ) -> tuple[Callable[[int], Callable[..., Any]], Any, int]:
    """(steps -> rollout(key, params), params, num_agents) for ``VecEnv(AutoReset(env))``
    (a :func:`random_rollout`); ``env_kwargs`` go to ``make`` (e.g. ``num_agents``)."""
    from jaxmarl_coop.envs import AutoReset, VecEnv, make

    env, params = make(env_id, **env_kwargs)
    if env.continuous_actions:
        raise ValueError(f"{env_id}: the benchmark draws discrete actions")
    venv = VecEnv(AutoReset(env), batch)

    def reset(key: jax.Array, params: Any) -> tuple[Any, jax.Array]:
        state, ts = venv.reset(key, params)
        return state, jnp.sum(ts.obs)

    def step(key: jax.Array, state: Any, actions: jax.Array, params: Any
             ) -> tuple[Any, jax.Array]:
        state, ts = venv.step(key, state, actions, params)
        return state, jnp.sum(ts.obs) + jnp.sum(ts.reward) + jnp.sum(ts.done)

    def make_rollout(steps: int) -> Callable[..., Any]:
        return random_rollout(reset, step, steps, batch, env.num_agents, env.num_actions)

    return make_rollout, params, env.num_agents


def rollout_probe_steps(probe_steps: int, batch: int, target_s: float) -> int:
    """Probe long enough that per-call overhead does not skew the estimate at small batch."""
    if target_s <= 0:  # --quick: T is the probe
        return probe_steps
    return max(probe_steps, PROBE_ENV_STEPS // batch)


def time_rollout(make_rollout: Callable[[int], Callable[..., Any]], extra_args: tuple[Any, ...],
                 *, target_s: float, repeats: int, probe_steps: int) -> dict[str, Any]:
    """Time ``make_rollout(T)(key, *extra_args)``; ``T`` chosen so one run lasts ≈ target_s.

    A probe with ``probe_steps`` steps measures the time per step; unless it already lasts
    ``target_s`` the rollout is recompiled with the chosen ``T`` (so ``target_s <= 0`` means
    ``T = probe_steps``). Returns compile time (of the final ``T``), the per-run times and
    the median.
    """
    key = jax.random.PRNGKey(0)
    compiled, timing = compile_timed(make_rollout(probe_steps), key, *extra_args)
    timed_call(compiled, key, *extra_args)  # first run: allocations, thread pools
    probe_s = min(timed_call(compiled, jax.random.PRNGKey(i), *extra_args) for i in (1, 2))
    steps = probe_steps
    if probe_s < target_s:
        per_step = max(probe_s, 1e-9) / probe_steps
        steps = min(MAX_STEPS, max(probe_steps, math.ceil(target_s / per_step / 8) * 8))
        compiled, timing = compile_timed(make_rollout(steps), key, *extra_args)
        timed_call(compiled, key, *extra_args)
    runs = timed_repeats(compiled, lambda i: (jax.random.PRNGKey(100 + i), *extra_args),
                         repeats)
    return {"steps": steps, **timing, "probe_steps": probe_steps, "probe_s": probe_s, **runs}


def rollout_throughput(row: dict[str, Any], batch: int, num_agents: int) -> dict[str, Any]:
    """Env and agent steps per second of a :func:`time_rollout` row (median run)."""
    env_steps = row["steps"] * batch / row["median_run_s"]
    row.update(batch=batch, num_agents=num_agents, env_steps_per_s=env_steps,
               agent_steps_per_s=env_steps * num_agents)
    return row


# --------------------------------------------------------------------------------------------
# results.json
# --------------------------------------------------------------------------------------------
def git_commit(repo: Path) -> str | None:
    """The checked-out commit of ``repo`` (None if it is not a git checkout)."""
    try:
        return subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def results_header(benchmark: str, argv: Sequence[str] | None, settings: dict[str, Any],
                   method: str) -> dict[str, Any]:
    """The opening of every benchmark's results.json: what ran, when, how and where.

    Warns (stderr) when other processes already keep the CPUs busy."""
    data = {
        "benchmark": benchmark, "schema_version": 1,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": [sys.executable, "-m", f"experiments.benchmarks.{benchmark}",
                    *(sys.argv[1:] if argv is None else argv)],
        "machine": machine_info(), "settings": settings, "method": method,
    }
    busy = data["machine"]["other_cpu_busy_start"]
    if busy is not None and busy > 0.1:
        log(f"warning: other processes keep {busy:.0%} of the CPUs busy; timings will suffer")
    return data


#: how every learning benchmark times a training run (the opening of its ``method``)
TRAINING_METHOD = ("each training run is one jit(vmap(train)) over seeds, lowered and compiled "
                   "apart (trace_and_compile_s) and timed once (run_s)")


def start_run(benchmark: str, argv: Sequence[str] | None, args: argparse.Namespace,
              method: str) -> tuple[Path, float, dict[str, Any]]:
    """A learning benchmark's start: its output folder ``args.out`` (created), the start time
    (``time.perf_counter()``) and the :func:`results_header` with ``vars(args)``."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    return out, start, results_header(benchmark, argv, vars(args), method)


def save_results(path: str | os.PathLike[str], data: dict[str, Any],
                 start: float | None = None) -> Path:
    """Stamp ``data`` with the end of the run so far (``machine.loadavg_end``, and with
    ``start``, a ``time.perf_counter()`` reading, ``total_wall_s``), then write it as JSON
    atomically: a run killed meanwhile leaves the previous file whole."""
    data["machine"]["loadavg_end"] = list(os.getloadavg())
    if start is not None:
        data["total_wall_s"] = time.perf_counter() - start
    return write_json_atomic(path, data)


def benchmark_parser(doc: str, epilog: bool = True) -> argparse.ArgumentParser:
    """A script's parser: its docstring's first paragraph as the description and, with
    ``epilog``, the rest as the epilog (shown as written)."""
    return argparse.ArgumentParser(
        description=doc.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=doc.split("\n\n", 1)[1] if epilog else None)


def fill_defaults(args: argparse.Namespace, defaults: dict[str, Any]) -> None:
    """Set each option of ``defaults`` that the command line left at None (tuples as lists)."""
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, list(value) if isinstance(value, tuple) else value)


def check_at_least_one(parser: Any, args: Any, *names: str) -> None:
    """``parser.error`` for any of ``args``' ``names`` below 1 (``--name-with-dashes``)."""
    for name in names:
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")


# --------------------------------------------------------------------------------------------
# greedy evaluation and learning curves
# --------------------------------------------------------------------------------------------
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


def plot_section_curves(section: dict[str, Any], path: Path, title: str,
                        extra_metric: str | None = None) -> str:
    """One panel per metric: each run's mean ± 95% band over seeds of a per-update training
    metric (``run["learning_curves"][metric]``, from :func:`learning_curve`) against env
    steps, with ``section["references"]``' evaluations as dashed lines. Runs are labelled by
    ``run["variant"]``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("episode_return", "team return per episode (training)")]
    if extra_metric:
        panels.append((extra_metric, extra_metric.replace("episode_", "") + " per step"))
    fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 4.4), squeeze=False)
    runs = section["runs"]
    for ax, (metric, label) in zip(axes[0], panels, strict=True):
        for i, run in enumerate(runs):
            curve = run["learning_curves"].get(metric)
            if not curve or not curve["env_steps"]:
                continue
            x, y = np.asarray(curve["env_steps"]), np.asarray(curve["mean"])
            half = np.nan_to_num(np.asarray(curve["ci95"], np.float64))
            seeds = run["timing"]["seeds"]
            ax.plot(x, y, color=f"C{i}", label=f"{run['variant']} ({seeds} seeds)")
            ax.fill_between(x, y - half, y + half, color=f"C{i}", alpha=0.2)
        key = "return" if metric == "episode_return" else metric[len("episode_"):]
        for j, (name, ev) in enumerate(section.get("references", {}).items()):
            if key in ev:
                ax.axhline(ev[key]["mean"], ls="--", lw=1, color=f"C{len(runs) + j}",
                           label=f"{name} (evaluation)")
        ax.set_xlabel("env steps (per seed)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return str(path)


# --------------------------------------------------------------------------------------------
# JaxMARL's baselines, unmodified from a checkout
# --------------------------------------------------------------------------------------------
JAXMARL_SPREAD = "MPE_simple_spread_v3"
JAXMARL_SPREAD_STEPS = 26  # its spread episodes last 26 steps, ours (and mpe2's) 25


def run_peer(args: argparse.Namespace, label: str, run: Callable[[], dict[str, Any]]
             ) -> dict[str, Any]:
    """``run()``'s JaxMARL figures, unless ``--skip-jaxmarl`` or no ``--jaxmarl-repo`` says to
    skip it; a peer that cannot run (missing, not a checkout, not the expected config) is
    recorded as failed and the run goes on."""
    if args.skip_jaxmarl:
        return {"status": "skipped", "reason": "--skip-jaxmarl"}
    if not args.jaxmarl_repo:
        log(f"JaxMARL {label} not run: pass --jaxmarl-repo PATH (see --help)")
        return {"status": "skipped", "reason": "no --jaxmarl-repo (or $JAXMARL_REPO)"}
    try:
        return run()
    except (ImportError, FileNotFoundError, ValueError, KeyError) as exc:
        log(f"JaxMARL {label} not run: {exc}")
        return {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}


def load_script(repo: Path, rel: str) -> Any:
    """Import a JaxMARL baseline file from ``repo`` as a module (unmodified)."""
    path = Path(repo) / rel
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: --jaxmarl-repo must be a JaxMARL checkout")
    name = "jaxmarl_baseline_" + Path(rel).stem
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    with contextlib.redirect_stdout(io.StringIO()):  # jaxmarl prints on import
        spec.loader.exec_module(module)
    return module


def load_yaml(repo: Path, rel: str) -> dict[str, Any]:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.load(Path(repo) / rel))


def qlearning_config(repo: Path, alg_rel: str) -> dict[str, Any]:
    """JaxMARL's Q-learning config: ``config/config.yaml`` with an ``alg`` yaml merged on top,
    as its hydra entry point does with ``+alg=NAME`` and its ``single_run`` then merges."""
    base = load_yaml(repo, "baselines/QLearning/config/config.yaml")
    alg = load_yaml(repo, alg_rel)
    return {**base, "alg": alg, **alg}


@contextlib.contextmanager
def qr_by_gram_schmidt() -> Iterator[None]:
    """While JaxMARL's programs are traced: the QR of a tall matrix by Gram-Schmidt (flax's
    orthogonal init is its only LAPACK call, and a batched LAPACK QR deadlocks jaxlib 0.10's
    2-thread CPU pool). jax's initialiser calls ``jax._src.numpy.linalg.qr`` (through
    ``jax.random.orthogonal``); older versions ``jax.numpy.linalg.qr``: both are replaced.
    The same matrices from the same draws; nothing in their files changes."""
    import jax.numpy as jnp
    from jax._src.numpy import linalg as jnp_linalg

    from jaxmarl_coop.learners.networks import _gram_schmidt

    originals = [(module, module.qr) for module in (jnp.linalg, jnp_linalg)]

    def qr(a: Any, mode: str = "reduced") -> Any:
        if mode != "reduced" or a.shape[-2] < a.shape[-1]:
            return originals[0][1](a, mode=mode)
        q = jnp.vectorize(_gram_schmidt, signature="(m,k)->(m,k)")(a)
        return q, jnp.swapaxes(q, -1, -2) @ a

    for module, _ in originals:
        module.qr = qr
    jax.clear_caches()  # jax.random.orthogonal is jitted: drop any trace made without this
    try:
        yield
    finally:
        for module, original in originals:
            module.qr = original
        jax.clear_caches()


def calls_lapack(hlo_text: str) -> bool:
    """Whether a compiled program calls a LAPACK kernel (``lapack_sgeqrf_ffi`` etc.)."""
    return re.search(r"lapack_\w+|geqrf", hlo_text) is not None


def _latest_test(runner_state: Any) -> dict[str, Any] | None:
    """The greedy-test dict a JaxMARL Q-learning runner state keeps (its position differs
    between scripts: IQL/QMIX ``(train, buffer, test, rng)``, VDN-FF ``(..., expl, test,
    rng)``)."""
    for part in runner_state:
        if isinstance(part, dict) and any(k.startswith("returned_episode_returns")
                                          for k in part):
            return part
    return None


def run_jaxmarl_qlearning(module: Any, defaults: dict[str, Any], label: str, *, steps: int,
                          seeds: int, test: bool, test_num_envs: int | None = None
                          ) -> dict[str, Any]:
    """One ``jit(vmap(make_train(config, env)))`` run of a JaxMARL Q-learning script (IQL,
    VDN, QMIX), compile timed apart. Overrides only TOTAL_TIMESTEPS, NUM_SEEDS, WANDB_MODE
    and, without ``test``, TEST_DURING_TRAINING (and TEST_NUM_ENVS when given).

    Its ``train`` logs per-update metrics to wandb only, but the runner state keeps its
    latest greedy test (TEST_NUM_ENVS episodes every TEST_INTERVAL of the updates): with
    ``test``, that is the final return reported. Its MPE log wrapper records N x each agent's
    return, so the mean over agents of the logged returns (per agent with IQL's
    LOG_AGENTS_SEPARATELY, already averaged over agents by VDN and QMIX) is the team return
    (sum over agents), the same quantity as ours."""
    overrides: dict[str, Any] = {"TOTAL_TIMESTEPS": int(steps), "NUM_SEEDS": int(seeds),
                                 "WANDB_MODE": "disabled"}
    if not test:
        overrides["TEST_DURING_TRAINING"] = False
    if test_num_envs is not None:
        overrides["TEST_NUM_ENVS"] = int(test_num_envs)
    config = {**copy.deepcopy(defaults), **overrides}
    with contextlib.redirect_stdout(io.StringIO()):
        env, env_name = module.env_from_config(copy.deepcopy(config))
        train = module.make_train(config, env)  # sets config["NUM_UPDATES"]
    rngs = jax.random.split(jax.random.PRNGKey(config["SEED"]), config["NUM_SEEDS"])
    log(f"JaxMARL {label} {env_name}: {seeds} seeds x {steps:,} env steps "
        f"({config['NUM_UPDATES']} updates, tests during training: {test}) ...")
    with qr_by_gram_schmidt():
        outs, timing = timed_train(jax.vmap(train), rngs)
    per_seed = int(config["NUM_UPDATES"]) * config["NUM_STEPS"] * config["NUM_ENVS"]
    add_throughput(timing, seeds, per_seed)
    log(f"  compile {timing['trace_and_compile_s']:.1f} s, run {timing['run_s']:.1f} s, "
        f"{timing['env_steps_per_s']:,.0f} env steps/s (all seeds)")
    result: dict[str, Any] = {"overrides": overrides, "num_updates": int(config["NUM_UPDATES"]),
                              "timing": timing}
    if test:
        tests = _latest_test(outs["runner_state"])
        if tests is None:
            raise KeyError(f"JaxMARL {label}: no greedy test found in its runner state")
        tests = jax.device_get(tests)
        agents = list(env.agents)
        if "returned_episode_returns" in tests:  # VDN, QMIX: already the mean over agents
            team = np.asarray(tests["returned_episode_returns"])
            length = np.asarray(tests["returned_episode_lengths"])
        else:  # IQL with LOG_AGENTS_SEPARATELY: one entry per agent
            team = np.mean([tests[f"returned_episode_returns_{a}"] for a in agents], axis=0)
            length = np.mean([tests[f"returned_episode_lengths_{a}"] for a in agents], axis=0)
        num_updates = int(config["NUM_UPDATES"])
        interval = max(1, int(num_updates * config["TEST_INTERVAL"]))
        last_test = num_updates - num_updates % interval
        result.update({
            "test_num_envs": int(config["TEST_NUM_ENVS"]),
            "test_num_steps": int(config["TEST_NUM_STEPS"]),
            "final_test_update": last_test,
            "final_test_env_steps": last_test * config["NUM_STEPS"] * config["NUM_ENVS"],
            "final_episode_length": float(np.mean(length)),
            "final_team_return": ci(team),
            "final_per_step_x25": ci(team * 25.0 / JAXMARL_SPREAD_STEPS),
        })
    return result
