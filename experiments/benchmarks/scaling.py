"""How cost grows with the work: parallel envs, vmapped seeds, agents per env.

Run from the repository root::

    python -m experiments.benchmarks.scaling                 # full run (minutes; not in CI)
    python -m experiments.benchmarks.scaling --quick         # smoke test, tiny sizes
    python -m experiments.benchmarks.scaling --axes envs --env-sizes 1 1024 65536   # GPU

Three axes, each a series of programs that differ in one size only:

* ``envs``: ``VecEnv(AutoReset(env), B)`` rollouts of random actions in one jitted
  ``lax.scan`` (the very rollout of ``env_throughput.py``: ``common.ours_rollout``, timed by
  ``common.time_rollout``), ``B`` in ``--env-sizes`` (default 1 ... 8192), on each of
  ``--envs`` (default ``spread-v3`` and ``tracking-v1``). Work unit: one env; efficiency is
  env steps/s per env against its best.
* ``seeds``: ``jit(vmap(train))`` of one small MAPPO run (``actor_critic``, centralised critic,
  PPO, ``--train-updates`` updates of 16 envs x 128 steps) for ``S`` seeds in
  ``--seed-counts`` (default 1 ... 64) on spread-v3. Env steps/s counts all seeds' steps
  (``S * updates * 16 * 128`` per run). Work unit: one seed.
* ``agents``: the ``envs`` rollout at a fixed batch (``--agents-batch``, default 1024) with
  ``num_agents`` in ``--agent-counts`` (default 2 ... 32). Work unit: one agent step (an
  env whose cost grew linearly with its agents would keep agent steps/s flat).

Every program is lowered and compiled apart (``trace_and_compile_s``); throughput is the
median of ``--repeats`` timed runs (rollouts: each about ``--target-seconds`` long, ``T``
chosen from a probe). Memory: XLA's compiled memory analysis of the timed program
(argument, output, temp and alias bytes, and its own peak estimate where jaxlib reports
one), plus the device allocator's ``peak_bytes_in_use`` (``jax.devices()[0].memory_stats()``)
read after the row where the backend provides it (GPU; None on CPU). That allocator figure
is the process's high-water mark so far, not the row's own: sizes run in increasing order
within an axis, so it grows with the row that set it; ``peak_bytes_in_use_before`` tells
whether this row raised it.

Where the curve bends: per series, efficiency = throughput per work unit / its best over
the series; the printed bend is the last size (from the best one on) before efficiency first
falls below ``--threshold`` (default 0.8) of the best. Results: ``OUT/results.json`` (written
atomically) and ``OUT/scaling.png`` (per axis: log-log throughput above, efficiency below).
"""

from jaxmarl_coop.runtime import configure_xla

configure_xla()  # before any JAX computation: safe XLA_FLAGS on small CPU machines

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import io  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402

from experiments.benchmarks.common import (  # noqa: E402
    PROBE_STEPS,
    QUICK_STEPS,
    benchmark_parser,
    compile_timed,
    fill_defaults,
    log,
    machine_summary,
    other_cpu_busy,
    ours_rollout,
    results_header,
    rollout_probe_steps,
    rollout_throughput,
    save_results,
    table,
    time_rollout,
    timed_call,
    timed_repeats,
    write_bytes_atomic,
)

AXES = ("envs", "seeds", "agents")
DEFAULT_ENVS = ("spread-v3", "tracking-v1")
DEFAULT_OUT = "runs/bench/scaling"
DEFAULT_ENV_SIZES = (1, 4, 16, 64, 256, 1024, 4096, 8192)
DEFAULT_SEED_COUNTS = (1, 2, 4, 8, 16, 32, 64)
DEFAULT_AGENT_COUNTS = (2, 4, 8, 16, 32)
QUICK_ENV_SIZES = (1, 4)
QUICK_SEED_COUNTS = (1, 2)
QUICK_AGENT_COUNTS = (2, 4)
#: the training program of the seeds axis: small MAPPO on spread (3 agents)
SEEDS_ENV = "spread-v3"
TRAIN_CONFIG = {"algorithm": "ppo", "critic": "centralised", "num_envs": 16,
                "rollout_length": 128, "num_epochs": 4, "num_minibatches": 4,
                "hidden": (64, 64), "activation": "tanh"}
QUICK_TRAIN_CONFIG = {**TRAIN_CONFIG, "num_envs": 4, "rollout_length": 8, "num_epochs": 1,
                      "num_minibatches": 1, "hidden": (16,)}
TRAIN_HP = {"lr": 1e-3}
#: what one unit of work is, per axis (efficiency = throughput per unit / its best)
UNITS = {"envs": "env", "seeds": "seed", "agents": "agent step"}
MIB = 1 << 20


# --------------------------------------------------------------------------------------------
# memory
# --------------------------------------------------------------------------------------------
_MEMORY_FIELDS = {"argument_bytes": "argument_size_in_bytes",
                  "output_bytes": "output_size_in_bytes",
                  "temp_bytes": "temp_size_in_bytes",
                  "alias_bytes": "alias_size_in_bytes",
                  "generated_code_bytes": "generated_code_size_in_bytes",
                  "peak_bytes": "peak_memory_in_bytes"}


def compiled_memory(compiled: Any) -> dict[str, int | None] | None:
    """XLA's memory analysis of a compiled program (bytes), or None if not reported."""
    try:
        stats = compiled.memory_analysis()
    except Exception:  # some backends/versions do not implement it
        return None
    if stats is None:
        return None
    out = {}
    for name, attr in _MEMORY_FIELDS.items():
        value = getattr(stats, attr, None)
        out[name] = None if value is None else int(value)
    return out


def device_memory() -> dict[str, int | None] | None:
    """The first device's allocator stats (GPU), or None where the backend has none (CPU)."""
    try:
        stats = jax.devices()[0].memory_stats()
    except Exception:
        return None
    if not stats:
        return None
    out: dict[str, int | None] = {k: int(stats[k]) for k in (
        "bytes_in_use", "peak_bytes_in_use", "bytes_limit") if k in stats}
    return out


def _with_device_memory(row: dict[str, Any], before: dict[str, int | None] | None
                        ) -> dict[str, Any]:
    after = device_memory()
    row["device_memory"] = after
    if after is not None:
        after["peak_bytes_in_use_before"] = (before or {}).get("peak_bytes_in_use")
    return row


# --------------------------------------------------------------------------------------------
# where the curve bends
# --------------------------------------------------------------------------------------------
def find_bend(sizes: Sequence[float], per_unit: Sequence[float], threshold: float = 0.8
              ) -> dict[str, Any]:
    """Where throughput per unit of work falls below ``threshold`` of its best.

    ``per_unit[i]`` is the throughput per work unit at ``sizes[i]`` (any order). Efficiency
    is ``per_unit / max(per_unit)``. From the best size on, ``first_below_size`` is the first
    size whose efficiency is below ``threshold`` and ``bend_size`` the size just before it
    (the size after which the curve bends); with none below, ``bend_size`` is the largest
    size and ``first_below_size`` None (no bend in the measured range).
    """
    if len(sizes) != len(per_unit) or not sizes:
        raise ValueError("find_bend needs as many per_unit values as sizes, at least one")
    order = np.argsort(np.asarray(sizes, dtype=np.float64), kind="stable")
    xs = [sizes[i] for i in order]
    ys = np.asarray([per_unit[i] for i in order], dtype=np.float64)
    best_i = int(np.nanargmax(ys))
    eff = ys / ys[best_i]
    below = [i for i in range(best_i, len(xs)) if not eff[i] >= threshold]
    first = below[0] if below else None
    return {"threshold": threshold, "sizes": xs, "efficiency": eff.tolist(),
            "best_size": xs[best_i], "best_per_unit": float(ys[best_i]),
            "bend_size": xs[first - 1] if first is not None else xs[-1],
            "first_below_size": xs[first] if first is not None else None,
            "efficiency_at_first_below": float(eff[first]) if first is not None else None}


def add_efficiency(rows: list[dict[str, Any]], threshold: float) -> list[dict[str, Any]]:
    """Per series: each row's ``efficiency`` and the series' :func:`find_bend` summary."""
    bends = []
    for series in dict.fromkeys(r["series"] for r in rows):
        sel = [r for r in rows if r["series"] == series]
        bend = find_bend([r["size"] for r in sel], [r["per_unit"] for r in sel], threshold)
        best = bend["best_per_unit"]
        for r in sel:
            r["efficiency"] = r["per_unit"] / best
        bends.append({"series": series, "axis": sel[0]["axis"], "unit": sel[0]["unit"],
                      **{k: v for k, v in bend.items() if k not in ("sizes", "efficiency")}})
    return bends


def describe_bend(bend: dict[str, Any]) -> str:
    """One line: where the series stays efficient and where it falls below the threshold."""
    unit, thr = bend["unit"], bend["threshold"]
    head = (f"{bend['axis']}/{bend['series']}: throughput per {unit} >= {thr:.0%} of its best "
            f"(at {bend['best_size']})")
    if bend["first_below_size"] is None:
        return f"{head} up to {bend['bend_size']}, the largest size measured: no bend in range"
    return (f"{head} up to {bend['bend_size']}; bends after it: "
            f"{bend['efficiency_at_first_below']:.0%} at {bend['first_below_size']}")


# --------------------------------------------------------------------------------------------
# the three axes
# --------------------------------------------------------------------------------------------
def _recording(make_rollout: Callable[[int], Callable[..., Any]]
               ) -> tuple[Callable[[int], Callable[..., Any]], list[Callable[..., Any]]]:
    """``make_rollout`` that also keeps every rollout it makes (the last one is timed)."""
    made: list[Callable[..., Any]] = []

    def make(steps: int) -> Callable[..., Any]:
        made.append(make_rollout(steps))
        return made[-1]

    return make, made


def bench_rollout(env_id: str, batch: int, *, target_s: float, repeats: int,
                  probe_steps: int, env_kwargs: dict[str, Any] | None = None
                  ) -> dict[str, Any]:
    """One rollout row: ``common.time_rollout``, as env_throughput's, plus memory figures."""
    make_rollout, params, num_agents = ours_rollout(env_id, batch, **(env_kwargs or {}))
    make, made = _recording(make_rollout)
    mem_before = device_memory()
    row = time_rollout(make, (params,), target_s=target_s, repeats=repeats,
                       probe_steps=rollout_probe_steps(probe_steps, batch, target_s))
    # the timed program again: jax's in-process caches return the same executable
    t0 = time.perf_counter()
    compiled, _ = compile_timed(made[-1], jax.random.PRNGKey(0), params)
    row["memory_analysis_s"] = time.perf_counter() - t0
    row["memory"] = compiled_memory(compiled)
    row.update(env=env_id, seeds=1)
    return _with_device_memory(rollout_throughput(row, batch, num_agents), mem_before)


def axis_envs(args: argparse.Namespace, timing: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for env_id in args.envs:
        for batch in sorted(args.env_sizes):
            row = bench_rollout(env_id, batch, **timing)
            row.update(axis="envs", series=env_id, size=batch, unit=UNITS["envs"],
                       per_unit=row["env_steps_per_s"] / batch)
            rows.append(row)
            _progress(row)
    return rows


def axis_agents(args: argparse.Namespace, timing: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for env_id in args.envs:
        for n in sorted(args.agent_counts):
            row = bench_rollout(env_id, args.agents_batch, env_kwargs={"num_agents": n},
                                **timing)
            row.update(axis="agents", series=env_id, size=n, unit=UNITS["agents"],
                       per_unit=row["agent_steps_per_s"])
            rows.append(row)
            _progress(row)
    return rows


def train_program(quick: bool, updates: int) -> tuple[Callable[..., Any], Any, Any, int]:
    """``(train, config, hp, num_agents)`` of the seeds axis' MAPPO run."""
    from jaxmarl_coop.envs import make
    from jaxmarl_coop.learners import actor_critic as ac

    env, params = make(SEEDS_ENV)
    config = ac.ActorCriticConfig(num_updates=updates,
                                  **(QUICK_TRAIN_CONFIG if quick else TRAIN_CONFIG))
    learner = ac.make_learner(config, env, params)
    return learner.train, config, config.hyperparams(**TRAIN_HP), env.num_agents


def bench_seeds(seeds: int, *, quick: bool, updates: int, repeats: int) -> dict[str, Any]:
    """One seeds row: ``jit(vmap(train))`` compiled apart, median of ``repeats`` runs."""
    from jaxmarl_coop.learners.base import stack_hyperparams

    train, config, hp, num_agents = train_program(quick, updates)
    hps = stack_hyperparams(hp, seeds)

    def keys(i: int) -> jax.Array:
        return jax.random.split(jax.random.PRNGKey(1000 + i), seeds)

    mem_before = device_memory()
    compiled, timing = compile_timed(jax.vmap(train), keys(0), hps)
    timed_call(compiled, keys(0), hps)  # first run: allocations, thread pools
    runs = timed_repeats(compiled, lambda i: (keys(i + 1), hps), repeats)
    env_steps = seeds * config.total_env_steps / runs["median_run_s"]
    row = {**timing, **runs, "updates": updates,
           "env_steps_per_seed": config.total_env_steps, "memory": compiled_memory(compiled),
           "env": SEEDS_ENV, "batch": config.num_envs,
           "seeds": seeds, "num_agents": num_agents, "env_steps_per_s": env_steps,
           "agent_steps_per_s": env_steps * num_agents,
           "config": dataclasses.asdict(config), "hyperparams": TRAIN_HP}
    return _with_device_memory(row, mem_before)


def axis_seeds(args: argparse.Namespace, timing: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for seeds in sorted(args.seed_counts):
        row = bench_seeds(seeds, quick=args.quick, updates=args.train_updates,
                          repeats=args.repeats)
        row.update(axis="seeds", series=f"mappo/{SEEDS_ENV}", size=seeds, unit=UNITS["seeds"],
                   per_unit=row["env_steps_per_s"] / seeds)
        rows.append(row)
        _progress(row)
    return rows


AXIS_RUNNERS = {"envs": axis_envs, "seeds": axis_seeds, "agents": axis_agents}
AXIS_TITLES = {
    "envs": "parallel envs (auto-reset rollout, random actions)",
    "seeds": "vmapped seeds of one MAPPO training program (jit(vmap(train)))",
    "agents": "agents per env (auto-reset rollout at a fixed batch)",
}


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------
def _mib(value: int | None) -> str:
    return "-" if value is None else f"{value / MIB:.1f}"


def _progress(row: dict[str, Any]) -> None:
    log(f"  {row['axis']:<6} {row['series']:<16} {row['size']:>6}: "
        f"{row['env_steps_per_s']:>13,.0f} env steps/s (compile "
        f"{row['trace_and_compile_s']:.2f} s, runs " + ", ".join(
            f"{t:.3f}" for t in row["run_s"]) + " s)")


def format_table(axis: str, rows: list[dict[str, Any]]) -> str:
    unit = UNITS[axis]
    header = (f"{'series':<17} {'size':>6} {'env steps/s':>13} {'agent steps/s':>14} "
              f"{'per ' + unit:>14} {'eff':>5} {'compile s':>9} {'temp MiB':>9} "
              f"{'args MiB':>9} {'out MiB':>8} {'dev peak MiB':>12}")
    lines = []
    for r in rows:
        mem = r.get("memory") or {}
        dev = r.get("device_memory") or {}
        lines.append(f"{r['series']:<17} {r['size']:>6} {r['env_steps_per_s']:>13,.0f} "
                     f"{r['agent_steps_per_s']:>14,.0f} {r['per_unit']:>14,.0f} "
                     f"{r['efficiency']:>5.0%} {r['trace_and_compile_s']:>9.2f} "
                     f"{_mib(mem.get('temp_bytes')):>9} {_mib(mem.get('argument_bytes')):>9} "
                     f"{_mib(mem.get('output_bytes')):>8} "
                     f"{_mib(dev.get('peak_bytes_in_use')):>12}")
    return table(header, lines)


def plot(axes_data: dict[str, dict[str, Any]], path: Path, title: str) -> str:
    """Per axis a column: log-log env steps/s (agents: agent steps/s dashed) above,
    efficiency per work unit below, the threshold and each series' bend marked."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = list(axes_data)
    fig = Figure(figsize=(5.2 * len(names), 7.6), layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.subplots(2, len(names), squeeze=False)
    for col, axis in enumerate(names):
        top, bottom = grid[0][col], grid[1][col]
        rows, bends = axes_data[axis]["rows"], axes_data[axis]["bends"]
        for i, bend in enumerate(bends):
            sel = [r for r in rows if r["series"] == bend["series"]]
            x = [r["size"] for r in sel]
            color = f"C{i % 10}"
            top.plot(x, [r["env_steps_per_s"] for r in sel], "o-", color=color,
                     label=f"{bend['series']} env steps/s")
            if axis == "agents":
                top.plot(x, [r["agent_steps_per_s"] for r in sel], "s--", color=color,
                         alpha=0.7, label=f"{bend['series']} agent steps/s")
            bottom.plot(x, [r["efficiency"] for r in sel], "o-", color=color,
                        label=bend["series"])
            bottom.axvline(bend["bend_size"], color=color, ls=":", lw=1)
        threshold = bends[0]["threshold"] if bends else 0.8
        bottom.axhline(threshold, color="grey", ls="--", lw=1,
                       label=f"{threshold:.0%} of best")
        sizes = sorted({r["size"] for r in rows})
        for ax in (top, bottom):
            ax.set_xscale("log", base=2)
            ax.set_xticks(sizes, [str(s) for s in sizes], fontsize="x-small")
            ax.minorticks_off()
            ax.grid(alpha=0.3)
            ax.legend(fontsize="x-small")
        top.set_yscale("log")
        top.set_title(AXIS_TITLES[axis], fontsize="small")
        top.set_ylabel("steps per second")
        bottom.set_ylabel(f"throughput per {UNITS[axis]} / best")
        bottom.set_xlabel({"envs": "parallel envs", "seeds": "seeds (vmapped)",
                           "agents": f"agents per env (batch {rows[0]['batch']})"
                           if rows else "agents"}[axis])
        bottom.set_ylim(0, 1.05)
    fig.suptitle(title, fontsize="medium")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    write_bytes_atomic(path, buf.getvalue())
    return str(path)


# --------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = benchmark_parser(__doc__)
    p.add_argument("--axes", nargs="+", choices=AXES, default=list(AXES),
                   help="axes to measure, in this order (default envs seeds agents)")
    p.add_argument("--envs", nargs="+", default=list(DEFAULT_ENVS),
                   help="env ids of the envs and agents axes (default spread-v3 tracking-v1)")
    p.add_argument("--env-sizes", nargs="+", type=int, default=None,
                   help="parallel envs (default 1 4 16 ... 4096 8192; quick 1 4)")
    p.add_argument("--seed-counts", nargs="+", type=int, default=None,
                   help="vmapped seeds (default 1 2 4 ... 64; quick 1 2)")
    p.add_argument("--agent-counts", nargs="+", type=int, default=None,
                   help="agents per env (default 2 4 8 16 32; quick 2 4)")
    p.add_argument("--agents-batch", type=int, default=None,
                   help="parallel envs of the agents axis (default 1024; quick 8)")
    p.add_argument("--train-updates", type=int, default=None,
                   help="updates per training run, seeds axis (default 4; quick 1)")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed runs per row, median (default 5; quick 2)")
    p.add_argument("--target-seconds", type=float, default=None,
                   help=f"length of one timed rollout (default 0.5; quick: T={QUICK_STEPS})")
    p.add_argument("--threshold", type=float, default=0.8,
                   help="efficiency below which the curve is said to bend (default 0.8)")
    p.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke test")
    p.add_argument("--out", default=DEFAULT_OUT,
                   help=f"output folder: results.json, scaling.png (default {DEFAULT_OUT})")
    args = p.parse_args(argv)
    q = args.quick
    defaults = {"env_sizes": QUICK_ENV_SIZES if q else DEFAULT_ENV_SIZES,
                "seed_counts": QUICK_SEED_COUNTS if q else DEFAULT_SEED_COUNTS,
                "agent_counts": QUICK_AGENT_COUNTS if q else DEFAULT_AGENT_COUNTS,
                "agents_batch": 8 if q else 1024, "train_updates": 1 if q else 4,
                "repeats": 2 if q else 5, "target_seconds": 0.0 if q else 0.5}
    fill_defaults(args, defaults)
    for name in ("env_sizes", "seed_counts", "agent_counts"):
        values = getattr(args, name)
        if any(v < 1 for v in values) or len(set(values)) != len(values):
            p.error(f"--{name.replace('_', '-')} must be distinct integers >= 1")
    for name in ("agents_batch", "train_updates", "repeats"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if not 0 < args.threshold <= 1:
        p.error("--threshold must be in (0, 1]")
    from jaxmarl_coop.envs import registered

    unknown = sorted(set(args.envs) - set(registered()))
    if unknown:
        p.error(f"unknown env id(s) {', '.join(unknown)}")
    args.axes = list(dict.fromkeys(args.axes))  # the order given (run order), once each
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    out = Path(args.out)
    start = time.perf_counter()
    timing = {"target_s": args.target_seconds, "repeats": args.repeats,
              "probe_steps": QUICK_STEPS if args.quick else PROBE_STEPS}
    data = results_header(
        "scaling", argv,
        {**vars(args), "timing": timing,
         "train_config": QUICK_TRAIN_CONFIG if args.quick else TRAIN_CONFIG,
         "train_hyperparams": TRAIN_HP},
        "envs/agents axes: env_throughput's jitted lax.scan rollout (auto-reset, random "
        "actions, obs/reward/done consumed by a checksum), T chosen so one run lasts about "
        "target_s; seeds axis: jit(vmap(train)) of a small MAPPO run; every program "
        "compiled apart (trace_and_compile_s), throughput from the median of `repeats` "
        "timed runs; memory: compiled.memory_analysis() of the timed program and the "
        "device allocator's process-wide peak_bytes_in_use after the row (None on CPU); "
        "efficiency = throughput per work unit / the series' best; bend_size = last size, "
        "from the best on, before efficiency first drops below the threshold")
    data.update(units=UNITS, axes={}, plot=None)
    data["machine"]["device_kind"] = jax.devices()[0].device_kind

    def save() -> None:
        save_results(out / "results.json", data, start)

    for axis in args.axes:
        log(f"{axis} axis:")
        rows = AXIS_RUNNERS[axis](args, timing)
        bends = add_efficiency(rows, args.threshold)
        data["axes"][axis] = {"title": AXIS_TITLES[axis], "unit": UNITS[axis], "rows": rows,
                              "bends": bends}
        m = data["machine"]
        data["plot"] = plot(data["axes"], out / "scaling.png",
                            f"scaling on {m['device_kind']} ({m['backend']}; host "
                            f"{m['cpu_model']}, {m['usable_cores']} cores), jax "
                            f"{m['jax_version']}")
        save()  # after every axis, the plot too: a later failure loses nothing measured

    data["machine"]["other_cpu_busy_end"] = other_cpu_busy()
    m = data["machine"]
    save()

    for axis, section in data["axes"].items():
        print(f"\n{axis}: {section['title']}; median of {args.repeats} runs, compile apart")
        print(format_table(axis, section["rows"]))
        for bend in section["bends"]:
            print("  bend: " + describe_bend(bend))
    print("\n" + machine_summary(m, data["total_wall_s"], device=True))
    print(f"wrote {out / 'results.json'} and {data['plot']}")
    return data


if __name__ == "__main__":
    main()
