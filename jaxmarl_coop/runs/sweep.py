"""Sweeps as a library: hyperparameters and env params over seeds, one compiled program.

``experiments.sweep`` is its command line (the options and the folder are described there):
each ``--grid NAME=V1,V2,...`` is one axis of a cartesian grid over a hyperparameter
(traced) or an env param (traced); every grid point x seed is one lane of
``jax.vmap(train)`` with a greedy evaluation of the final parameters, all compiled once and
sharded over the devices (``jaxmarl_coop.parallel.run_grid``).
"""

from __future__ import annotations

import dataclasses
import datetime
import io
import math
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxmarl_coop import parallel
from jaxmarl_coop.envs.core import episode_limit
from jaxmarl_coop.learners import registry
from jaxmarl_coop.learners.base import stack_hyperparams
from jaxmarl_coop.learners.evaluation import evaluate
from jaxmarl_coop.runs import folder
from jaxmarl_coop.runs.config import RunConfig, UsageError, parse_value
from jaxmarl_coop.runs.io import (
    mean_ci95,
    write_bytes_atomic,
    write_json_atomic,
    write_text_atomic,
)
from jaxmarl_coop.runs.training import FINAL_EVAL, build


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    """A sweep: the grid (``NAME=V1,V2,...`` per axis) and the fixed rest of each run."""

    grid: tuple[str, ...]
    learner: str = "mappo"
    env: str = "tracking-v1"
    seeds: int = 4
    env_steps: int = 200_000
    hp: tuple[str, ...] = ()
    env_param: tuple[str, ...] = ()
    config: tuple[str, ...] = ()
    eval_episodes: int = 64
    seed: int = 0
    devices: int | None = None
    out: str = ""
    distributed: bool = False


def _options(args: Any) -> dict[str, Any]:
    return dataclasses.asdict(args) if dataclasses.is_dataclass(args) else dict(vars(args))


#: fraction of the last updates whose training return is averaged into ``train_return``
LAST_FRACTION = 0.05


@dataclasses.dataclass(frozen=True)
class Axis:
    """One grid axis: a hyperparameter (``kind="hp"``) or an env param (``kind="env"``)."""

    name: str
    values: tuple[float, ...]
    kind: str


def parse_axes(specs: list[str], learner: str, env_id: str, hp: Any, env_params: Any
               ) -> list[Axis]:
    """The ``--grid`` axes, each value checked against the learner's or env's rules."""
    hp_names = {f.name for f in dataclasses.fields(hp)}
    env_names = {f.name for f in dataclasses.fields(env_params)
                 if np.ndim(getattr(env_params, f.name)) == 0
                 and not dataclasses.is_dataclass(getattr(env_params, f.name))}
    axes: list[Axis] = []
    for spec in specs:
        if "=" not in spec:
            raise UsageError(f"--grid must look like NAME=V1,V2,..., got {spec!r}")
        name, text = (s.strip() for s in spec.split("=", 1))
        if name in {a.name for a in axes}:
            raise UsageError(f"--grid {name} is given twice")
        if name in hp_names and name in env_names:
            raise UsageError(f"--grid {name}: both a hyperparameter of {learner} and a param "
                             f"of {env_id}; set one of them with --hp or --env-param")
        if name not in hp_names | env_names:
            raise UsageError(
                f"--grid {name}: {learner} has no hyperparameter and {env_id} no param "
                f"{name}; hyperparameters: {', '.join(sorted(hp_names))}; env params: "
                f"{', '.join(sorted(env_names))} (env constructor options are static: "
                "sweep them with separate runs)")
        values = [parse_value(v.strip()) for v in text.split(",") if v.strip()]
        for v in values:
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise UsageError(f"--grid {name}: values must be numbers, got {v!r}")
        kind = "hp" if name in hp_names else "env"
        # what runs is the value in the field's dtype: refuse what that dtype would change
        # (10.5 for an integer runs as 10), so that what is recorded is what ran
        dtype = np.dtype(jax.dtypes.canonicalize_dtype(
            np.asarray(getattr(hp if kind == "hp" else env_params, name)).dtype))
        values = [_grid_value(name, v, dtype) for v in values]
        if len(set(values)) != len(values):
            raise UsageError(f"--grid {name}: a value is given twice ({text})")
        try:  # each value through the dataclass's own checks (lr > 0, gamma in [0, 1] ...)
            for v in values:
                (hp if kind == "hp" else env_params).replace(**{name: v})
        except (ValueError, TypeError) as err:
            raise UsageError(f"--grid {name}: {str(err).splitlines()[0]}") from err
        axes.append(Axis(name, tuple(values), kind))
    return axes


def _grid_value(name: str, value: float, dtype: np.dtype) -> float:
    """``value`` as the ``dtype`` field ``name`` will hold it (an int for an integer field);
    ``UsageError`` if that would not be ``value`` (a fraction for an integer, out of range,
    NaN)."""
    try:
        number = float(value)
    except OverflowError:
        raise UsageError(f"--grid {name}: {value} is too large") from None
    if math.isnan(number):
        raise UsageError(f"--grid {name}: NaN is not a value to sweep")
    if dtype.kind in "iu":
        if not number.is_integer():
            raise UsageError(f"--grid {name}: {name} is an integer, got {value!r}")
        info = np.iinfo(dtype)
        if not info.min <= int(value) <= info.max:
            raise UsageError(f"--grid {name}: {value} does not fit {name}'s {dtype} "
                             f"({info.min} .. {info.max})")
        return int(value)
    if dtype.kind == "f" and math.isfinite(number) and abs(number) > float(np.finfo(dtype).max):
        raise UsageError(f"--grid {name}: {value} is larger than {dtype} holds")
    return value


def final_train_return(episode_return: np.ndarray) -> np.ndarray:
    """Per run, the mean training return of the last 5% of updates (NaN where none ended).

    ``episode_return`` is ``(runs, updates)`` (extra trailing axes are averaged).
    """
    arr = np.asarray(episode_return, np.float64)
    arr = arr.reshape(arr.shape[0], arr.shape[1], -1).mean(axis=2)
    last = max(1, math.ceil(LAST_FRACTION * arr.shape[1]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slice -> NaN
        return np.nanmean(arr[:, -last:], axis=1)


def _stat(values: np.ndarray) -> dict[str, Any]:
    finite = values[np.isfinite(values)]
    mean, half = mean_ci95(finite) if finite.size else (float("nan"), float("nan"))
    return {"mean": mean, "ci95": half, "per_seed": values}


def _fmt(value: float) -> str:
    return f"{value:g}"


def _fmt_stat(stat: dict[str, Any]) -> str:
    mean, half = stat["mean"], stat["ci95"]
    return f"{mean:.4g} ± {half:.3g}" if np.isfinite(half) else f"{mean:.4g}"


def summarise(axes: list[Axis], labels: dict[str, np.ndarray], values: dict[str, np.ndarray],
              train_return: np.ndarray, eval_return: np.ndarray) -> list[dict[str, Any]]:
    """One entry per grid point (mean ± 95% CI over seeds), best greedy return first."""
    points = []
    for p in np.unique(labels["point"]):
        rows = labels["point"] == p
        first = int(np.argmax(rows))
        points.append({"point": int(p),
                       "values": {a.name: values[a.name][first].item() for a in axes},
                       "seeds": int(rows.sum()),
                       "eval_return": _stat(eval_return[rows]),
                       "train_return": _stat(train_return[rows])})

    def key(entry: dict[str, Any]) -> tuple[bool, float]:
        mean = entry["eval_return"]["mean"]
        return (not np.isfinite(mean), -mean if np.isfinite(mean) else 0.0)

    return sorted(points, key=key)


def table(axes: list[Axis], points: list[dict[str, Any]]) -> str:
    """The summary as aligned text, one line per grid point in the order given."""
    head = ["rank", *(a.name for a in axes), "greedy return", "train return", "seeds"]
    body = [[str(i + 1), *(_fmt(pt["values"][a.name]) for a in axes),
             _fmt_stat(pt["eval_return"]), _fmt_stat(pt["train_return"]), str(pt["seeds"])]
            for i, pt in enumerate(points)]
    widths = [max(len(r[c]) for r in [head, *body]) for c in range(len(head))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True))
                     .rstrip() for r in [head, *body])


def plot(axes: list[Axis], points: list[dict[str, Any]], title: str, path: Path) -> None:
    """heatmap.png: 2 axes a grid of mean greedy returns; else one point per setting + CI."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    by_point = sorted(points, key=lambda pt: pt["point"])
    fig = Figure(figsize=(7.5, 5.0), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    if len(axes) == 2:
        rows, cols = axes
        grid = np.array([pt["eval_return"]["mean"] for pt in by_point]).reshape(
            len(rows.values), len(cols.values))
        image = ax.imshow(grid, cmap="viridis", aspect="auto", origin="lower")
        fig.colorbar(image, ax=ax, label="greedy team return (mean over seeds)")
        finite = grid[np.isfinite(grid)]
        middle = (finite.min() + finite.max()) / 2 if finite.size else 0.0
        for pt in by_point:
            i, j = divmod(pt["point"], len(cols.values))
            text = _fmt_stat(pt["eval_return"]).replace(" ± ", "\n± ")
            ax.text(j, i, text, ha="center", va="center", fontsize="small",
                    color="black" if grid[i, j] > middle else "white")
        ax.set_xticks(range(len(cols.values)), [_fmt(v) for v in cols.values])
        ax.set_yticks(range(len(rows.values)), [_fmt(v) for v in rows.values])
        ax.set_xlabel(cols.name)
        ax.set_ylabel(rows.name)
    else:
        x = np.arange(len(by_point))
        means = np.array([pt["eval_return"]["mean"] for pt in by_point])
        halves = np.array([pt["eval_return"]["ci95"] for pt in by_point])
        ax.errorbar(x, means, yerr=np.where(np.isfinite(halves), halves, 0.0), fmt="o-",
                    capsize=4)
        names = [", ".join(f"{a.name}={_fmt(pt['values'][a.name])}" for a in axes)
                 if len(axes) > 1 else _fmt(pt["values"][axes[0].name]) for pt in by_point]
        ax.set_xticks(x, names, rotation=30 if len(axes) > 1 else 0, ha="right"
                      if len(axes) > 1 else "center", fontsize="small")
        ax.set_xlabel(axes[0].name if len(axes) == 1 else "grid point")
        ax.set_ylabel("greedy team return (mean, 95% CI over seeds)")
        ax.grid(alpha=0.3)
    ax.set_title(title)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    write_bytes_atomic(path, buf.getvalue())


def _default_out(learner: str, env: str) -> Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"sweep-{learner}-{env}-{stamp}"


def _grid_wants_hysteretic(grid: list[str], learner: str, config: tuple[str, ...]) -> bool:
    """Whether ``--grid`` sweeps ``hysteretic_beta`` below 1 for a learner whose config has
    the static ``hysteretic`` switch, not given in ``--config``."""
    try:
        fields = registry.get_learner(learner).config_fields()
    except ValueError:
        return False  # an unknown learner: RunConfig says so
    if "hysteretic" not in fields or any(p.split("=", 1)[0].strip() == "hysteretic"
                                         for p in config):
        return False
    for spec in grid:
        name, _, text = spec.partition("=")
        if name.strip() == "hysteretic_beta":
            return any(parse_value(v.strip()) != 1 for v in text.split(",") if v.strip())
    return False


def sweep(args: Any, argv: list[str] | None = None) -> dict[str, Any]:
    """Run the sweep ``args`` (a :class:`SweepConfig`, or the parsed command line) into its
    folder; returns summary.json's content."""
    config_pairs = tuple(args.config)
    if _grid_wants_hysteretic(args.grid, args.learner, config_pairs):
        config_pairs += ("hysteretic=true",)  # a beta below 1 needs the two-rate optimiser
    try:
        run = RunConfig(learner=args.learner, env=args.env, env_param=tuple(args.env_param),
                        hp=tuple(args.hp), config=config_pairs, seeds=args.seeds,
                        env_steps=args.env_steps, chunks=1, eval_episodes=args.eval_episodes,
                        seed=args.seed, devices=1, gif=False)
    except ValueError as err:
        raise UsageError(str(err)) from err
    built = build(run)
    spec, env, env_params, config, hp, learner = (built.spec, built.env, built.env_params,
                                                  built.config, built.hp, built.learner)
    axes = parse_axes(args.grid, run.learner, run.env, hp, env_params)
    for axis in axes:  # the plain step would ignore a beta below 1 (learners.dqn)
        if (axis.name == "hysteretic_beta" and not getattr(config, "hysteretic", True)
                and any(v != 1 for v in axis.values)):
            raise UsageError("--grid hysteretic_beta below 1 needs the two-rate optimiser: "
                             "drop --config hysteretic=false")
    try:
        values, labels = parallel.grid(seeds=run.seeds, **{a.name: list(a.values)
                                                           for a in axes})
    except ValueError as err:
        raise UsageError(f"--grid: {err}") from err
    distributed = bool(getattr(args, "distributed", False))
    try:
        mesh = parallel.seed_mesh(args.devices, global_devices=distributed)
    except ValueError as err:
        raise UsageError(f"--devices: {err}") from err
    main_process = parallel.is_main_process()  # the only one that writes and prints
    out = Path(parallel.broadcast_text(str(args.out or _default_out(run.learner, run.env))))
    taken = ""
    if main_process:
        try:
            folder.check_out_folder(out)
        except ValueError as err:
            taken = str(err)
        if not taken and (out / "config.json").exists():
            taken = f"{out} already holds results; choose another --out"
    taken = parallel.broadcast_text(taken)
    if taken:
        raise UsageError(taken)

    runs = len(labels["seed"])
    hp_axes = {a.name: jnp.asarray(values[a.name], jnp.asarray(getattr(hp, a.name)).dtype)
               for a in axes if a.kind == "hp"}
    env_axes = {a.name: jnp.asarray(values[a.name],
                                    jnp.asarray(getattr(env_params, a.name)).dtype)
                for a in axes if a.kind == "env"}
    seed_keys = jax.random.split(jax.random.PRNGKey(run.seed), run.seeds)
    eval_keys = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(run.seed + 1),
                                                    FINAL_EVAL), run.seeds)
    points = {"hp": stack_hyperparams(hp.replace(**hp_axes), runs), "env": env_axes,
              "eval_key": eval_keys[labels["seed"]]}
    max_steps = int(np.max(np.asarray(values["max_steps"]))) if "max_steps" in env_axes \
        else episode_limit(env, env_params)
    episodes = run.eval_episodes

    def one_run(key: jax.Array, point: dict[str, Any]) -> dict[str, jax.Array]:
        lane_params, lane_learner = env_params, learner
        if point["env"]:  # this lane's env params; learners read them only when called
            lane_params = env_params.replace(**point["env"])
            lane_learner = spec.module.make_learner(config, env, lane_params)
        state, metrics = lane_learner.train(key, point["hp"])
        policy = spec.module.make_policy(config, env, spec.module.policy_params(state))
        figures = evaluate(env, lane_params, policy, point["eval_key"], episodes, max_steps)
        return {"episode_return": metrics["episode_return"],
                "eval": {k: jnp.mean(v.astype(jnp.float32)) for k, v in figures.items()
                         if k not in ("agent_returns", "completed")}}

    say = print if main_process else (lambda *a, **k: None)
    if main_process:
        write_json_atomic(out / "config.json", {
            "sweep": _options(args), "axes": {a.name: list(a.values) for a in axes},
            "axis_kinds": {a.name: "hyperparameter" if a.kind == "hp" else "env param"
                           for a in axes},
            "learner_config": dataclasses.asdict(config), "hyperparams": hp,
            "env_params": env_params, "num_updates": config.num_updates,
            "env_steps_per_update": config.num_envs * config.rollout_length,
            "env_steps_per_run": config.total_env_steps, "grid_points": runs // run.seeds,
            "seeds": run.seeds, "runs": runs, "devices": mesh.size,
            "processes": jax.process_count(), "jax": jax.__version__,
            "backend": jax.default_backend(),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds"),
            "argv": sys.argv[1:] if argv is None else list(argv)})
    where = f" of {jax.process_count()} processes" if distributed else ""
    say(f"sweep {run.learner} on {run.env}: {runs // run.seeds} grid points x {run.seeds} "
        f"seeds = {runs} runs of {config.num_updates} updates ({config.total_env_steps:,} "
        f"env steps each) on {mesh.size} {jax.default_backend()} device(s){where}; compiling "
        "and running one program ...", flush=True)
    t0 = time.perf_counter()
    outputs = parallel.gather(parallel.run_grid(one_run, seed_keys[labels["seed"]], points,
                                                mesh))
    say(f"done in {time.perf_counter() - t0:.1f} s (compile included)", flush=True)

    train_return = final_train_return(outputs["episode_return"])
    evals = {k: np.asarray(v, np.float64) for k, v in outputs["eval"].items()}
    columns = ["point", *(a.name for a in axes), "seed", "train_return", "eval_return",
               *(f"eval_{k}" for k in sorted(evals) if k != "return")]
    lines = [",".join(columns)]
    for r in range(runs):
        cells = [str(labels["point"][r]), *(_fmt(values[a.name][r].item()) for a in axes),
                 str(labels["seed"][r]), f"{train_return[r]:.6g}", f"{evals['return'][r]:.6g}",
                 *(f"{evals[k][r]:.6g}" for k in sorted(evals) if k != "return")]
        lines.append(",".join(cells))

    ranked = summarise(axes, labels, values, train_return, evals["return"])
    summary = {"learner": run.learner, "env": run.env, "sorted_by": "eval_return",
               "eval_return": f"greedy team return of the final parameters, "
                              f"{episodes} episodes per run",
               "train_return": f"training return, mean of the last {LAST_FRACTION:.0%} of "
                               "updates",
               "interval": "mean ± 95% Student-t CI over seeds",
               "best": ranked[0], "points": ranked}
    if not main_process:
        return summary
    write_text_atomic(out / "results.csv", "\n".join(lines) + "\n")
    write_json_atomic(out / "summary.json", summary)
    plot(axes, ranked, f"{run.learner} on {run.env}: greedy return, {run.seeds} seeds",
         out / "heatmap.png")
    print(table(axes, ranked))
    print(f"results folder: {out}")
    return summary


