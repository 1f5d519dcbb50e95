"""Memory: recurrent (GRU) learners against their feed-forward versions, on tasks where memory
matters and on one where it should not.

Run from the repository root (not in CI)::

    python -m experiments.benchmarks.memory --out /tmp/memory
    python -m experiments.benchmarks.memory --quick --out /tmp/memory-quick

What is run
-----------
Per task, each learner variant (``--learners``; default MAPPO and MAPPO with ``recurrent=True``,
and IQL with and without it where DQN has the option) trains ``--seeds`` seeds in one
``jit(vmap(train))`` program with the learner's registered defaults
(``jaxmarl_coop.presets``); the only difference between a pair is ``recurrent``. Env steps
per seed: ``--steps`` for every task if given; else the memory tasks (cue, tracking) train to
the first of ``--marks`` and spread to the last (default 1 M and 3 M).
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

``results.json`` is rewritten after every run, and ``--resume`` keeps from an existing one
every run (and JaxMARL's section) made with the same settings, so a long benchmark stopped
part-way goes on from its last finished run.

JaxMARL beside ours (``--jaxmarl-repo PATH``, on spread; ``--skip-jaxmarl`` leaves it out)
-----------------------------------------------------------------------------------------
Its recurrent baselines run unmodified from a checkout of FLAIROx/JaxMARL, in this process,
with their own yaml configs, overriding only TOTAL_TIMESTEPS (the largest ``--marks``),
NUM_SEEDS (``--seeds``) and WANDB_MODE:

- ``baselines/MAPPO/mappo_rnn_mpe.py`` (GRU 128, 16 envs x 128 steps, like our MAPPO's
  defaults): its only output of returns is the ``wandb.log`` of its per-update
  ``io_callback``, so the loaded module's ``wandb`` name is pointed at a recorder (its code
  is not touched). The logged ``returns`` is the mean over its actors (envs x agents) of the
  last finished episode's return; its MPE log wrapper records N x each agent's return, so
  that mean is the team return (the sum over agents), and times 25/26 it is on the per-step
  scale of our 25-step episodes (its spread episodes last 26 steps). At each mark: each
  seed's mean over the ``MARK_WINDOW`` updates ending there, for ours (the training curve)
  and theirs alike;
- ``baselines/QLearning/iql_rnn.py`` (GRU 64, its ``ql_rnn_mpe`` config): one run per mark,
  its final greedy test (``TEST_NUM_ENVS`` episodes), scaled x25/26; ours at the last mark is
  the greedy evaluation, at earlier marks the training curve (marked as such).

Its flax orthogonal initialiser's QR is computed by Gram-Schmidt while its programs are
traced (a batched LAPACK QR deadlocks this CPU's runtime; ``common.qr_by_gram_schmidt``).
The install recipe is in ``experiments/benchmarks/learn_independent.py``'s docstring.
"""

from jaxmarl_coop.runtime import configure_xla

configure_xla()  # before any JAX computation: safe XLA_FLAGS on small CPU machines

import argparse  # noqa: E402
import contextlib  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import types  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402

from experiments.benchmarks.common import (  # noqa: E402
    JAXMARL_SPREAD_STEPS,
    TRAINING_METHOD,
    add_throughput,
    benchmark_parser,
    check_at_least_one,
    ci,
    evaluate_policies,
    fmt,
    git_commit,
    jaxmarl_version,
    learning_curve,
    load_script,
    load_yaml,
    log,
    machine_summary,
    plot_section_curves,
    pm,
    qlearning_config,
    qr_by_gram_schmidt,
    run_jaxmarl_qlearning,
    run_peer,
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


#: JaxMARL's recurrent baselines on spread, from a checkout (paths inside it)
JAXMARL_MAPPO = {"script": "baselines/MAPPO/mappo_rnn_mpe.py",
                 "config": "baselines/MAPPO/config/mappo_homogenous_rnn_mpe.yaml"}
JAXMARL_IQL = {"script": "baselines/QLearning/iql_rnn.py",
               "alg": "baselines/QLearning/config/alg/ql_rnn_mpe.yaml"}
#: tasks trained to the first mark (without --steps); the others train to the last
MEMORY_TASKS = ("cue", "tracking")
#: settings a kept run (--resume) must share with this one
RESUME_KEYS = ("seeds", "marks", "radius", "eval_episodes", "seed", "quick")
#: updates averaged into a training return at a mark (ours and JaxMARL's MAPPO alike)
MARK_WINDOW = 10
#: JaxMARL's spread returns to ours: its episodes last 26 steps, ours 25
PER_STEP_X25 = 25.0 / JAXMARL_SPREAD_STEPS


def at_marks(env_steps: np.ndarray, returns: np.ndarray, marks: Sequence[int],
             window: int = MARK_WINDOW) -> dict[str, Any]:
    """Per mark: each seed's mean training return ``returns`` (seeds, updates) over the
    ``window`` updates ending at the last one whose ``env_steps`` are at most the mark; mean ±
    95% CI over seeds (None where no update ends by the mark)."""
    out: dict[str, Any] = {}
    for mark in marks:
        end = int(np.searchsorted(np.asarray(env_steps), mark, side="right"))
        if end == 0:
            out[str(mark)] = None
            continue
        per_seed = np.nanmean(np.asarray(returns, np.float64)[:, max(0, end - window):end],
                              axis=1)
        out[str(mark)] = {**ci(per_seed), "env_steps": int(np.asarray(env_steps)[end - 1])}
    return out


def run_jaxmarl_mappo(args: argparse.Namespace) -> dict[str, Any]:
    """JaxMARL's ``mappo_rnn_mpe.py``, ``--seeds`` seeds vmapped, to the largest mark; its
    per-update returns from the ``wandb.log`` of its callback (see the module docstring)."""
    repo = Path(args.jaxmarl_repo).resolve()
    module = load_script(repo, JAXMARL_MAPPO["script"])
    config = {**load_yaml(repo, JAXMARL_MAPPO["config"]),
              "TOTAL_TIMESTEPS": max(args.marks), "NUM_SEEDS": args.seeds,
              "WANDB_MODE": "disabled"}
    records: list[dict[str, Any]] = []
    module.wandb = types.SimpleNamespace(log=records.append)  # its callback's only sink
    with contextlib.redirect_stdout(io.StringIO()):
        train = module.make_train(config)  # sets NUM_UPDATES, NUM_ACTORS
    updates, batch = int(config["NUM_UPDATES"]), config["NUM_ENVS"] * config["NUM_STEPS"]
    log(f"JaxMARL MAPPO-RNN {config['ENV_NAME']}: {args.seeds} seeds x {updates * batch:,} "
        f"env steps ({updates} updates) ...")
    rngs = jax.random.split(jax.random.PRNGKey(config["SEED"]), args.seeds)
    with qr_by_gram_schmidt():
        _, timing = timed_train(jax.vmap(train), rngs)
    add_throughput(timing, args.seeds, updates * batch)
    log(f"  compile {timing['trace_and_compile_s']:.1f} s, run {timing['run_s']:.1f} s, "
        f"{timing['env_steps_per_s']:,.0f} env steps/s (all seeds)")
    if len(records) != updates * args.seeds:
        raise ValueError(f"JaxMARL MAPPO-RNN logged {len(records)} updates, expected "
                         f"{updates} x {args.seeds} seeds")
    # its vmapped callback runs once per seed, in seed order, at every update; its MPE log
    # wrapper records N x each agent's return, so the mean over actors is the team return
    team = np.asarray([float(r["returns"]) for r in records]).reshape(updates, args.seeds).T
    team = team * PER_STEP_X25
    steps = (np.arange(updates) + 1) * batch
    return {"script": JAXMARL_MAPPO["script"], "config": config, "timing": timing,
            "num_updates": updates, "training_return_at": at_marks(steps, team, args.marks),
            "learning_curves": {"episode_return": learning_curve(steps, team)}}


def run_jaxmarl_iql(args: argparse.Namespace) -> dict[str, Any]:
    """JaxMARL's ``iql_rnn.py``: one run per mark, its final greedy test."""
    repo = Path(args.jaxmarl_repo).resolve()
    module = load_script(repo, JAXMARL_IQL["script"])
    defaults = qlearning_config(repo, JAXMARL_IQL["alg"])
    runs = {str(mark): run_jaxmarl_qlearning(module, defaults, "IQL-RNN", steps=mark,
                                             seeds=args.seeds, test=True)
            for mark in args.marks}
    return {"script": JAXMARL_IQL["script"], "alg_config": JAXMARL_IQL["alg"], "runs": runs,
            "greedy_return_at": {m: r["final_per_step_x25"] for m, r in runs.items()},
            "timing": runs[str(max(args.marks))]["timing"]}  # its longest run's


def run_jaxmarl(args: argparse.Namespace) -> dict[str, Any]:
    repo = Path(args.jaxmarl_repo).resolve()
    import wandb

    with contextlib.redirect_stdout(io.StringIO()):
        wandb.init(mode="disabled")  # as their main() does
    result: dict[str, Any] = {"status": "ok", "repo": str(repo), "commit": git_commit(repo),
                              "jaxmarl_version": jaxmarl_version(),
                              "scale": "team return (sum over agents) x 25/26"}
    learners = {VARIANTS[v][0] for v in args.learners}  # theirs beside the families we run
    for name, label, run in (("mappo", "MAPPO-RNN", run_jaxmarl_mappo),
                             ("dqn", "IQL-RNN", run_jaxmarl_iql)):
        if name in learners:
            result[label] = run(args)
    return result


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


def task_steps(task: str, args: argparse.Namespace) -> int:
    """Env steps per seed on ``task`` (the module docstring)."""
    if args.steps is not None:
        return args.steps
    return min(args.marks) if task in MEMORY_TASKS else max(args.marks)


def same_settings(previous: dict[str, Any] | None, args: argparse.Namespace) -> bool:
    """Whether a previous results.json was made with this run's ``RESUME_KEYS`` settings."""
    return previous is not None and all(previous["settings"].get(k) == getattr(args, k)
                                        for k in RESUME_KEYS)


def kept_runs(previous: dict[str, Any] | None, task: str, steps: int,
              args: argparse.Namespace) -> dict[str, Any]:
    """``--resume``: the runs (by variant) and JaxMARL section of ``task`` in a previous
    results.json made with the same settings; empty without one."""
    if not same_settings(previous, args) or task not in previous.get("tasks", {}):
        return {}
    section = previous["tasks"][task]
    if section.get("env_steps_per_seed") != steps:
        return {}
    kept = {r["variant"]: r for r in section["runs"]}
    if section.get("jaxmarl", {}).get("status") == "ok":
        kept["jaxmarl"] = section["jaxmarl"]
    return kept


def run_task(task: str, args: argparse.Namespace, previous: dict[str, Any] | None = None,
             save: Any = None) -> dict[str, Any]:
    """One task's section: the references, then each variant (kept from ``previous`` with
    ``--resume``, else trained and evaluated), ``save(section)`` after each."""
    env_id, kwargs = TASKS[task]
    if task == "tracking":
        kwargs = {**kwargs, "sensing_radius": args.radius}
    env, params = make(env_id, **kwargs)
    steps = task_steps(task, args)
    marks = [m for m in args.marks if m <= steps]
    kept = kept_runs(previous, task, steps, args)
    labels = [v for v in args.learners if available(v)]
    log(f"{env_id} {kwargs}: {', '.join(labels)}; {args.seeds} seeds x {steps:,} "
        "env steps" + (f" (kept from the last run: {', '.join(kept)})" if kept else "")
        + " ...")
    eval_keys = jax.random.split(jax.random.PRNGKey(args.seed + 1), args.seeds)
    refs = {"random": lambda env, _: random_policy(env), **reference_policies(env)}
    section: dict[str, Any] = {
        "task": task, "env": env_id, "env_kwargs": kwargs, "num_agents": env.num_agents,
        "episode_steps": int(params.max_steps), "env_steps_per_seed": steps,
        "references": evaluate_policies(env, params, {n: (lambda _, f=f: f(env, params), None)
                                                      for n, f in refs.items()},
                                        eval_keys, args.eval_episodes),
        "runs": [], "skipped": [v for v in args.learners if v not in labels]}
    per_seed: dict[str, np.ndarray] = {}
    for label in labels:
        if label in kept:
            section["runs"].append(kept[label])
            per_seed[label] = np.asarray(kept[label]["greedy_evaluation"]["return"]["per_seed"])
            continue
        name, overrides = VARIANTS[label]
        settings = {**(QUICK[name] if args.quick else {}), **overrides}
        if not overrides.get("recurrent"):
            settings.pop("rnn_hidden", None)
        learner, config = registry.make_learner(name, env, params, env_steps=steps,
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
        returns = np.asarray(metrics["episode_return"], np.float64)
        section["runs"].append({
            "variant": label, "learner": name, "config": config, "timing": timing,
            "greedy_evaluation": evaluation,
            "training_return_at": at_marks(x, returns, marks),
            "learning_curves": {"episode_return": learning_curve(x, returns)}})
        if save is not None:
            save(section)
    if task == "spread":
        section["jaxmarl"] = jm = kept.get("jaxmarl") or run_peer(
            args, "recurrent baselines", lambda: run_jaxmarl(args))
        ours = {r["variant"]: r["timing"]["env_steps_per_s"] for r in section["runs"]}
        for label, theirs in (("MAPPO", "MAPPO-RNN"), ("IQL", "IQL-RNN")):
            if theirs in jm and f"{label}-GRU" in ours:  # ours / theirs, same seeds and steps
                jm[theirs]["ours_over_theirs_env_steps_per_s"] = (
                    ours[f"{label}-GRU"] / jm[theirs]["timing"]["env_steps_per_s"])
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
    return "\n".join([title, table(head, lines), *gaps, *jaxmarl_lines(section)])


def jaxmarl_lines(section: dict[str, Any]) -> list[str]:
    """Ours and JaxMARL's recurrent baselines at the marks (spread), with the speed ratio."""
    jm = section.get("jaxmarl")
    if not jm:
        return []
    if jm.get("status") != "ok":
        return [f"JaxMARL: {jm.get('status')} ({jm.get('reason') or jm.get('error')})"]
    ours = {r["variant"]: r for r in section["runs"]}
    marks = sorted({int(m) for r in section["runs"] for m in r["training_return_at"]})
    head = (f"{'system':<26} " + " ".join(f"{f'{m:,} steps':>18}" for m in marks)
            + f" {'env steps/s':>12} {'compile s':>9}")
    lines = []

    def row(name: str, values: dict[str, Any], timing: dict[str, Any]) -> None:
        lines.append(f"{name:<26} " + " ".join(f"{pm(values.get(str(m))):>18}" for m in marks)
                     + f" {timing['env_steps_per_s']:>12,.0f} "
                     f"{timing['trace_and_compile_s']:>9.1f}")

    speed = []
    if "MAPPO-RNN" in jm and "MAPPO-GRU" in ours:
        theirs = jm["MAPPO-RNN"]
        row("ours MAPPO-GRU (train)", ours["MAPPO-GRU"]["training_return_at"],
            ours["MAPPO-GRU"]["timing"])
        row("JaxMARL MAPPO-RNN (train)", theirs["training_return_at"], theirs["timing"])
        speed.append(f"MAPPO: ours {theirs['ours_over_theirs_env_steps_per_s']:.2f}x "
                     "JaxMARL's env steps/s")
    if "IQL-RNN" in jm and "IQL-GRU" in ours:
        theirs = jm["IQL-RNN"]
        last = str(max(int(m) for m in theirs["runs"]))
        greedy = dict(ours["IQL-GRU"]["training_return_at"])
        greedy[last] = ours["IQL-GRU"]["greedy_evaluation"]["return"]
        row("ours IQL-GRU (last greedy)", greedy, ours["IQL-GRU"]["timing"])
        row("JaxMARL IQL-RNN (greedy)", theirs["greedy_return_at"], theirs["timing"])
        speed.append(f"IQL: ours {theirs['ours_over_theirs_env_steps_per_s']:.2f}x "
                     "JaxMARL's env steps/s")
    return ["JaxMARL's recurrent baselines (team return, per-step x25; train = training "
            f"episodes, mean of {MARK_WINDOW} updates):", table(head, lines), *speed]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--out", required=True, help="output folder (results.json, PNGs)")
    parser.add_argument("--tasks", nargs="+", choices=list(TASKS), default=list(TASKS))
    parser.add_argument("--learners", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--steps", type=int, default=None,
                        help="env steps per seed on every task (default: cue and tracking "
                        "the first mark, spread the last)")
    parser.add_argument("--marks", type=int, nargs="+", default=None,
                        help="env steps per seed at which returns are read (default "
                        "1,000,000 3,000,000; --quick 2,560 5,120)")
    parser.add_argument("--skip-jaxmarl", action="store_true",
                        help="do not run JaxMARL's recurrent baselines (spread)")
    parser.add_argument("--jaxmarl-repo", default=os.environ.get("JAXMARL_REPO"),
                        help="JaxMARL checkout with baselines/ (default $JAXMARL_REPO)")
    parser.add_argument("--radius", type=float, default=0.5,
                        help="tracking's sensing_radius (default 0.5; the arena is 2 x 2)")
    parser.add_argument("--eval-episodes", type=int, default=None,
                        help="greedy episodes per seed (default 128; --quick 4)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true",
                        help="keep the runs of --out's results.json made with these settings")
    parser.add_argument("--quick", action="store_true",
                        help="tiny networks and budget: checks the script, measures nothing")
    args = parser.parse_args(argv)
    if args.marks is None:
        args.marks = [2_560, 5_120] if args.quick else [1_000_000, 3_000_000]
    args.marks = sorted(set(args.marks))
    if args.eval_episodes is None:
        args.eval_episodes = 4 if args.quick else 128
    check_at_least_one(parser, args, "seeds", "eval_episodes")
    if args.steps is not None and args.steps < 1:
        parser.error("--steps must be >= 1")
    top = args.steps if args.steps is not None else math.inf
    if min(args.marks) < 1 or max(args.marks) > top:
        parser.error(f"--marks must lie in 1..--steps ({args.steps:,}), got {args.marks}")
    if args.seeds < 2:
        parser.error("--seeds must be >= 2 (confidence intervals over seeds)")
    if not args.radius > 0:
        parser.error(f"--radius must be > 0, got {args.radius}")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    out, start, data = start_run("memory", argv, args, TRAINING_METHOD + "; greedy evaluation "
                                 "of each seed's final parameters, memory reset per episode")
    previous = None
    if args.resume and (out / "results.json").is_file():
        previous = json.loads((out / "results.json").read_text())
    data["tasks"] = {}

    def save(section: dict[str, Any]) -> None:
        data["tasks"][section["task"]] = section
        save_results(out / "results.json", data, start)

    if same_settings(previous, args):
        for task, section in previous.get("tasks", {}).items():
            if task not in args.tasks:  # another task's runs, made with these settings
                data["tasks"][task] = section
    for task in args.tasks:
        section = run_task(task, args, previous, save)
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
