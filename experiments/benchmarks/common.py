"""Pieces the learning benchmarks share: the results header, summaries over seeds, binned
curves, formatting, greedy evaluation of several policies, compile and run timing, and
loading JaxMARL's baseline scripts unmodified from a checkout."""

from __future__ import annotations

import contextlib
import copy
import datetime
import importlib.util
import io
import itertools
import math
import re
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from experiments.benchmarks.env_throughput import (
    _cpu_sample,
    _others_busy,
    _own_cores,
    machine_info,
)
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


def check_at_least_one(parser: Any, args: Any, *names: str) -> None:
    """``parser.error`` for any of ``args``' ``names`` below 1 (``--name-with-dashes``)."""
    for name in names:
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")


def timed_train(fn: Callable[..., Any], *args: Any) -> tuple[Any, dict[str, Any]]:
    """``jax.jit(fn)`` compiled for ``args`` (timed apart), then one timed call, with the
    CPU share other processes took meanwhile."""
    t0 = time.perf_counter()
    lowered = jax.jit(fn).lower(*args)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    cpu0 = _cpu_sample()
    out = jax.block_until_ready(compiled(*args))
    t3 = time.perf_counter()
    cpu1 = _cpu_sample()
    return out, {"lower_s": t1 - t0, "compile_s": t2 - t1, "trace_and_compile_s": t2 - t0,
                 "run_s": t3 - t2, "other_cpu_busy": _others_busy(cpu0, cpu1),
                 "own_cores_used": _own_cores(cpu0, cpu1, t3 - t2)}


def add_throughput(timing: dict[str, Any], seeds: int, steps_per_seed: int) -> dict[str, Any]:
    """Env steps per second over all seeds and per seed, from ``timing["run_s"]``."""
    timing.update(seeds=seeds, env_steps_per_seed=steps_per_seed,
                  env_steps_per_s=seeds * steps_per_seed / timing["run_s"],
                  env_steps_per_s_per_seed=steps_per_seed / timing["run_s"])
    return timing


# --------------------------------------------------------------------------------------------
# JaxMARL's baselines, unmodified from a checkout
# --------------------------------------------------------------------------------------------
JAXMARL_SPREAD = "MPE_simple_spread_v3"
JAXMARL_SPREAD_STEPS = 26  # its spread episodes last 26 steps, ours (and mpe2's) 25


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


def jaxmarl_version() -> str | None:
    from experiments.benchmarks.env_throughput import _jaxmarl_version

    return _jaxmarl_version()


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
