"""Memory: recurrent (GRU) learners against their feed-forward versions, on tasks where memory
matters and on one where it should not.

Run from the repository root (not in CI)::

    python -m experiments.benchmarks.memory --out /tmp/memory
    python -m experiments.benchmarks.memory --quick --out /tmp/memory-quick

What is run
-----------
Per task, each learner variant (``--learners``; default MAPPO and MAPPO with ``recurrent=True``,
and IQL with and without it where DQN has the option) trains ``--seeds`` seeds in one
``jit(vmap(train))`` program for ``--steps`` env steps per seed with the learner's registered
defaults (``jaxmarl_coop.presets``); the only difference between a pair is ``recurrent``.
Each seed's final greedy policy then plays ``--eval-episodes`` whole episodes (a recurrent
team's memory reset at every episode start) next to the task's reference policies. Tasks:

- ``cue-v1``: a cue shows which landmark pays during the first steps only; a memoryless team
  is bounded by the goal-independent ceiling (``envs/cue.py``), a team that remembers is not;
- ``tracking-v1`` with ``sensing_radius`` ``--radius`` (and ``visibility_flags``): the target
  and teammates are seen only nearby, so an agent that loses sight must remember where it was;
- ``spread-v3``: fully observed, where recurrence should make no difference (a control).

Mean ± 95% Student-t CI over seeds; the gap of each recurrent variant to its feed-forward
twin with a Welch 95% interval. Wall clock of training with compile time apart. Curves (mean
with a 95% band of the per-update training return) are saved as PNG per task.
"""

from jaxmarl_coop.runtime import configure_xla

configure_xla()  # before any JAX computation: safe XLA_FLAGS on small CPU machines

import argparse  # noqa: E402
import math  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from typing import Any  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402

from experiments.benchmarks.common import (  # noqa: E402
    TRAINING_METHOD,
    add_throughput,
    benchmark_parser,
    check_at_least_one,
    evaluate_policies,
    fmt,
    learning_curve,
    log,
    machine_summary,
    plot_section_curves,
    pm,
    save_results,
    start_run,
    table,
    timed_train,
)
from jaxmarl_coop.envs import make, random_policy, reference_policies  # noqa: E402
from jaxmarl_coop.learners import registry  # noqa: E402
from jaxmarl_coop.learners.base import stack_hyperparams  # noqa: E402

#: task -> (env id, env kwargs); tracking's radius is set from --radius
TASKS = {"cue": ("cue-v1", {}),
         "tracking": ("tracking-v1", {"visibility_flags": True}),
         "spread": ("spread-v3", {})}
#: variant label -> (registered learner, config overrides)
VARIANTS = {"MAPPO": ("mappo", {}), "MAPPO-GRU": ("mappo", {"recurrent": True}),
            "IQL": ("dqn", {}), "IQL-GRU": ("dqn", {"recurrent": True})}
#: --quick: small programs, a short budget (a smoke run, not a result)
QUICK = {"mappo": {"num_envs": 4, "rollout_length": 25, "hidden": (16,), "rnn_hidden": 8},
         "dqn": {"num_envs": 2, "rollout_length": 25, "hidden": (16,), "rnn_hidden": 8,
                 "buffer_size": 500, "batch_size": 16, "learning_starts": 100}}


def available(label: str) -> bool:
    """Whether this checkout's learner has the variant (recurrent IQL needs DQN's option)."""
    name, overrides = VARIANTS[label]
    fields = registry.get_learner(name).config_class.__dataclass_fields__
    return all(k in fields for k in overrides)


def welch_gap(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """``mean(a) - mean(b)`` with a Welch 95% interval (normal approximation of t)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    gap, half = float(a.mean() - b.mean()), 1.96 * math.sqrt(va + vb)
    return {"gap": gap, "ci95": half, "clear": bool(abs(gap) > half)}


def run_task(task: str, args: argparse.Namespace) -> dict[str, Any]:
    env_id, kwargs = TASKS[task]
    if task == "tracking":
        kwargs = {**kwargs, "sensing_radius": args.radius}
    env, params = make(env_id, **kwargs)
    labels = [v for v in args.learners if available(v)]
    log(f"{env_id} {kwargs}: {', '.join(labels)}; {args.seeds} seeds x {args.steps:,} "
        "env steps ...")
    eval_keys = jax.random.split(jax.random.PRNGKey(args.seed + 1), args.seeds)
    refs = {"random": lambda env, _: random_policy(env), **reference_policies(env)}
    section: dict[str, Any] = {
        "task": task, "env": env_id, "env_kwargs": kwargs, "num_agents": env.num_agents,
        "episode_steps": int(params.max_steps), "env_steps_per_seed": args.steps,
        "references": evaluate_policies(env, params, {n: (lambda _, f=f: f(env, params), None)
                                                      for n, f in refs.items()},
                                        eval_keys, args.eval_episodes),
        "runs": [], "skipped": [v for v in args.learners if v not in labels]}
    per_seed: dict[str, np.ndarray] = {}
    for label in labels:
        name, overrides = VARIANTS[label]
        settings = {**(QUICK[name] if args.quick else {}), **overrides}
        if not overrides.get("recurrent"):
            settings.pop("rnn_hidden", None)
        learner, config = registry.make_learner(name, env, params, env_steps=args.steps,
                                                **settings)
        hp = stack_hyperparams(registry.make_hyperparams(name, config), args.seeds)
        keys = jax.random.split(jax.random.PRNGKey(args.seed), args.seeds)
        (state, metrics), timing = timed_train(jax.vmap(learner.train), keys, hp)
        add_throughput(timing, args.seeds, config.total_env_steps)
        log(f"  {label:<10} compile {timing['trace_and_compile_s']:.1f} s, run "
            f"{timing['run_s']:.1f} s, {timing['env_steps_per_s']:,.0f} env steps/s")
        trained = registry.policy_params(config, state)
        evaluation = evaluate_policies(
            env, params, {"greedy": (lambda p, c=config: registry.make_policy(c, env, p),
                                     trained)}, eval_keys, args.eval_episodes)["greedy"]
        per_seed[label] = np.asarray(evaluation["return"]["per_seed"])
        metrics = jax.device_get(metrics)
        x = np.asarray(metrics["env_steps"])[0]
        section["runs"].append({
            "variant": label, "learner": name, "config": config, "timing": timing,
            "greedy_evaluation": evaluation,
            "learning_curves": {"episode_return": learning_curve(
                x, np.asarray(metrics["episode_return"], np.float64))}})
    section["recurrent_gaps"] = {
        f"{label}-GRU": welch_gap(per_seed[f"{label}-GRU"], per_seed[label])
        for label in ("MAPPO", "IQL") if label in per_seed and f"{label}-GRU" in per_seed}
    return section


def task_table(section: dict[str, Any]) -> str:
    title = (f"{section['env']} {section['env_kwargs'] or ''} ({section['num_agents']} agents, "
             f"{section['env_steps_per_seed']:,} env steps per seed)")
    head = f"{'policy':<14} {'team return':>16} {'train s':>8} {'compile s':>9}"
    lines = [f"{r['variant']:<14} {pm(r['greedy_evaluation']['return']):>16} "
             f"{fmt(r['timing']['run_s'], '.0f'):>8} "
             f"{fmt(r['timing']['trace_and_compile_s'], '.1f'):>9}" for r in section["runs"]]
    lines += [f"{n:<14} {pm(ev['return']):>16} {'-':>8} {'-':>9}"
              for n, ev in section["references"].items()]
    gaps = [f"{k} - feed-forward: {g['gap']:+.2f} ± {g['ci95']:.2f}"
            f"{' (clear)' if g['clear'] else ''}" for k, g in section["recurrent_gaps"].items()]
    return "\n".join([title, table(head, lines), *gaps])


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--out", required=True, help="output folder (results.json, PNGs)")
    parser.add_argument("--tasks", nargs="+", choices=list(TASKS), default=list(TASKS))
    parser.add_argument("--learners", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--steps", type=int, default=None,
                        help="env steps per seed (default 2,000,000; --quick 5,000)")
    parser.add_argument("--radius", type=float, default=0.5,
                        help="tracking's sensing_radius (default 0.5; the arena is 2 x 2)")
    parser.add_argument("--eval-episodes", type=int, default=None,
                        help="greedy episodes per seed (default 128; --quick 4)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true",
                        help="tiny networks and budget: checks the script, measures nothing")
    args = parser.parse_args(argv)
    if args.steps is None:
        args.steps = 5_000 if args.quick else 2_000_000
    if args.eval_episodes is None:
        args.eval_episodes = 4 if args.quick else 128
    check_at_least_one(parser, args, "seeds", "steps", "eval_episodes")
    if args.seeds < 2:
        parser.error("--seeds must be >= 2 (confidence intervals over seeds)")
    if not args.radius > 0:
        parser.error(f"--radius must be > 0, got {args.radius}")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    out, start, data = start_run("memory", argv, args, TRAINING_METHOD + "; greedy evaluation "
                                 "of each seed's final parameters, memory reset per episode")
    data["tasks"] = {}
    for task in args.tasks:
        section = run_task(task, args)
        section["plot"] = plot_section_curves(section, out / f"{task}.png",
                                              f"{section['env']}: recurrent vs feed-forward")
        data["tasks"][task] = section
        save_results(out / "results.json", data, start)
        print(task_table(section), flush=True)
    save_results(out / "results.json", data, start)
    print(machine_summary(data["machine"], data.get("total_wall_s")), flush=True)
    return data


if __name__ == "__main__":
    main()
