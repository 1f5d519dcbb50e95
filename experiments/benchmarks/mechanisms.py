"""Cooperation mechanisms side by side: independent, hysteretic, value-decomposed (VDN, QMIX)
and centralised-critic (MAPPO) learners, and JaxMARL's VDN and QMIX as the peer.

Run from the repository root (not in CI; about an hour on a 2-core CPU)::

    python -m experiments.benchmarks.mechanisms --jaxmarl-repo /path/to/JaxMARL
    python -m experiments.benchmarks.mechanisms --quick --skip-jaxmarl --out /tmp/mech

What is run (``--only`` picks parts; each part's results are written as soon as it ends)
-----------------------------------------------------------------------------------------
1. ``matrix``: the climbing game and the penalty game (k = -25 and -100), where independent
   learners famously miscoordinate. Independent tabular Q, hysteretic tabular Q, IQL (DQN),
   hysteretic IQL, VDN, QMIX and MAPPO, ``--matrix-seeds`` seeds each in one
   ``jit(vmap(train))`` program. For every seed the final greedy policy plays one episode;
   a seed "reaches the optimum" when most of its greedy joint actions are optimal. Fractions
   with 95% Wilson intervals.
2. ``teams``: ``spread-v3`` (3 agents) and ``tracking-v1``: IQL vs VDN vs QMIX (one Q-learning
   config for the three, only the mixer differs: JaxMARL's Q-learning defaults on MPE) vs
   MAPPO, ``--seeds`` seeds x ``--steps`` env steps each; final greedy team return (and the
   env's metrics), compile time apart from the wall-clock of training.
3. ``apps``: ``load-balancing-v1`` and ``intersection-v1``: the same four learners
   (``--app-steps``) against each env's reference policies.
4. ``jaxmarl``: JaxMARL's ``baselines/QLearning/vdn_ff.py`` and ``qmix_rnn.py`` on
   ``MPE_simple_spread_v3``, unmodified from a checkout (``common.run_jaxmarl_qlearning``:
   its ``make_train(config, env)`` with its own yaml defaults, overriding only
   TOTAL_TIMESTEPS, NUM_SEEDS, WANDB_MODE and, for the throughput run, TEST_DURING_TRAINING):
   a throughput run without its periodic greedy tests and a return run with them
   (``--steps``, ``--seeds``, as ours). Next to them our VDN with its settings matched item
   by item to ``vdn_ff_mpe.yaml`` (our QMIX in part 2 already runs with the settings of
   ``ql_rnn_mpe.yaml``, which its QMIX uses), so both throughput ratios compare like work.

Mean ± 95% Student-t CI over seeds throughout. Learning curves (per-update team return of
the behaviour policy, mean and 95% band over seeds) are saved as PNG per env.

JaxMARL peer set-up: see ``experiments/benchmarks/learn_independent.py``.
"""

from jaxmarl_coop.runtime import configure_xla

configure_xla()  # before any JAX computation: safe XLA_FLAGS on small CPU machines

import argparse  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402

from experiments.benchmarks.common import (  # noqa: E402
    GAME_HEAD,
    JAXMARL_SPREAD,
    JAXMARL_SPREAD_STEPS,
    TRAINING_METHOD,
    add_throughput,
    benchmark_parser,
    check_at_least_one,
    ci,
    evaluate_policies,
    fill_defaults,
    fmt,
    fraction_ci,
    game_cells,
    git_commit,
    jaxmarl_version,
    learning_curve,
    load_script,
    log,
    other_cpu_busy,
    plot_section_curves,
    pm,
    qlearning_config,
    run_jaxmarl_qlearning,
    run_peer,
    save_results,
    start_run,
    table,
    timed_train,
    wilson,
)
from jaxmarl_coop.envs import make, random_policy, reference_policies  # noqa: E402
from jaxmarl_coop.learners import actor_critic as ac  # noqa: E402
from jaxmarl_coop.learners import dqn, tabular_q  # noqa: E402
from jaxmarl_coop.learners import value_decomposition as vd  # noqa: E402
from jaxmarl_coop.learners.base import stack_hyperparams  # noqa: E402
from jaxmarl_coop.learners.evaluation import evaluate  # noqa: E402
from jaxmarl_coop.presets import (  # noqa: E402
    HYSTERETIC_BETA,
    MATRIX_PPO_CONFIG,
    MATRIX_PPO_HP,
    MATRIX_Q_CONFIG,
    MATRIX_Q_HP,
    MATRIX_QMIX_MIXER,
    MATRIX_TABULAR_HP,
    PPO_CONFIG,
    PPO_HP,
    Q_CONFIG,
    Q_HP,
    Q_QUICK,
    QMIX_MIXER,
)

DEFAULT_OUT = "runs/bench/mechanisms"
SECTIONS = ("matrix", "teams", "apps", "jaxmarl")

# --------------------------------------------------------------------------------------------
# settings: the learners' tuned settings are in jaxmarl_coop.presets (on the matrix games
# MATRIX_*, on the particle tasks and applications Q_CONFIG / Q_HP / QMIX_MIXER for IQL, VDN
# and QMIX: JaxMARL's Q-learning defaults on MPE; HYSTERETIC_BETA for the hysteretic ones)
# --------------------------------------------------------------------------------------------
MATRIX_GAMES = (("climbing-v1", {}), ("penalty-v1", {"k": -25.0}),
                ("penalty-v1", {"k": -100.0}))
#: MAPPO: learn_actor_critic's PPO_CONFIG and PPO_HP, without its PPO_HP_BY_ENV (entropy
#: 0.01; the README's table was measured with them, before the spread entropy of 0.06 was
#: found)
PPO_QUICK = {"num_envs": 4, "rollout_length": 32, "num_minibatches": 2}

TEAM_ENVS = (("spread-v3", {"num_agents": 3}), ("tracking-v1", {}))
APP_ENVS = (("load-balancing-v1", {}), ("intersection-v1", {}))
TEAM_LEARNERS = ("IQL", "VDN", "QMIX", "MAPPO")
#: --quick: one learner per env, taken in turn (each env and each learner family still runs)
QUICK_ENV_LEARNERS = ("QMIX", "MAPPO")
#: extra metric drawn beside the return, per env
EXTRA_METRIC = {"spread-v3": "episode_collisions", "tracking-v1": "episode_collisions",
                "intersection-v1": "episode_collisions"}

#: JaxMARL's VDN (feed-forward) and QMIX (GRU) on spread; our VDN matched to its VDN-FF
JAXMARL_BASELINES = {
    "VDN": {"script": "baselines/QLearning/vdn_ff.py",
            "config": "baselines/QLearning/config/alg/vdn_ff_mpe.yaml"},
    "QMIX": {"script": "baselines/QLearning/qmix_rnn.py",
             "config": "baselines/QLearning/config/alg/ql_rnn_mpe.yaml"},
}
VDN_FF_MATCHED = {"num_envs": 32, "rollout_length": 16, "buffer_size": 100_000,
                  "batch_size": 32, "learning_starts": 10_000, "num_epochs": 1,
                  "target_update_interval": 200, "n_step": 1, "double_dqn": False,
                  "share_params": True, "hidden": (64, 64), "anneal_lr": True}


# --------------------------------------------------------------------------------------------
# learners
# --------------------------------------------------------------------------------------------
def _updates(steps: int, num_envs: int, rollout_length: int) -> int:
    return max(1, math.ceil(steps / (num_envs * rollout_length)))


def learner_setup(name: str, steps: int, *, matrix: bool = False, quick: bool = False,
                  q_settings: dict[str, Any] | None = None
                  ) -> tuple[Any, Any, dict[str, Any], Callable[..., Any]]:
    """``(module, config, hyperparams, make_policy(config, env, params))`` of a learner (its
    greedy policy: ``make_policy``'s default)."""
    hysteretic = name.startswith("hysteretic")
    beta = {"hysteretic_beta": HYSTERETIC_BETA} if hysteretic else {}
    if name.endswith("tabular"):
        config = tabular_q.TabularQConfig(num_envs=1, rollout_length=25,
                                          num_updates=_updates(steps, 1, 25))
        return tabular_q, config, {**MATRIX_TABULAR_HP, **beta}, tabular_q.make_policy
    if name == "MAPPO":
        settings = dict(MATRIX_PPO_CONFIG if matrix else PPO_CONFIG)
        if quick and not matrix:
            settings.update(PPO_QUICK)
        config = ac.ActorCriticConfig(
            algorithm="ppo", critic="centralised",
            num_updates=_updates(steps, settings["num_envs"], settings["rollout_length"]),
            **settings)
        return ac, config, dict(MATRIX_PPO_HP if matrix else PPO_HP), ac.make_policy
    settings = dict(MATRIX_Q_CONFIG if matrix else (q_settings or Q_CONFIG))
    if quick and not matrix:
        settings.update(Q_QUICK)
    if hysteretic:  # the two-rate optimiser is compiled only where asked for
        settings["hysteretic"] = True
    hp = {**(MATRIX_Q_HP if matrix else Q_HP), **beta}
    updates = _updates(steps, settings["num_envs"], settings["rollout_length"])
    base = name.removeprefix("hysteretic ")
    if base == "IQL":
        return dqn, dqn.DQNConfig(num_updates=updates, **settings), hp, dqn.make_policy
    qmix = MATRIX_QMIX_MIXER if matrix else QMIX_MIXER
    mixer = {"VDN": {"mixer": "vdn"}, "QMIX": {"mixer": "qmix", **qmix}}[base]
    return vd, vd.VDConfig(num_updates=updates, **settings, **mixer), hp, vd.make_policy


def train_seeds(name: str, env: Any, env_params: Any, steps: int, seeds: int, seed: int,
                **setup: Any) -> dict[str, Any]:
    """``seeds`` seeds of one learner in one ``jit(vmap(train))`` program, timed."""
    module, config, hp_values, policy = learner_setup(name, steps, **setup)
    learner = module.make_learner(config, env, env_params)
    hp = stack_hyperparams(config.hyperparams(**hp_values), seeds)
    keys = jax.random.split(jax.random.PRNGKey(seed), seeds)
    (state, metrics), timing = timed_train(jax.vmap(learner.train), keys, hp)
    add_throughput(timing, seeds, config.total_env_steps)
    log(f"  {name:<16} {env.name}: compile {timing['trace_and_compile_s']:.1f} s, run "
        f"{timing['run_s']:.1f} s, {timing['env_steps_per_s']:,.0f} env steps/s")
    learned = module.policy_params(state)  # what make_policy takes
    return {"state": learned, "metrics": jax.device_get(metrics), "timing": timing,
            "config": config, "hyperparams": hp_values,
            "policy": lambda p, config=config: policy(config, env, p)}


# --------------------------------------------------------------------------------------------
# 1. matrix games
# --------------------------------------------------------------------------------------------
MATRIX_LEARNERS = ("independent tabular", "hysteretic tabular", "IQL", "hysteretic IQL",
                   "VDN", "QMIX", "MAPPO")


def run_matrix(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for game, kwargs in MATRIX_GAMES[:1] if args.quick else MATRIX_GAMES:
        env, params = make(game, **kwargs)
        payoffs = np.asarray(env.payoff_tables(params)[0])
        for name in MATRIX_LEARNERS:
            run = train_seeds(name, env, params, args.matrix_steps, args.matrix_seeds,
                              args.seed, matrix=True)
            keys = jax.random.split(jax.random.PRNGKey(args.seed + 1), args.matrix_seeds)
            def greedy(p: Any, k: jax.Array, run=run, env=env, params=params) -> Any:
                return evaluate(env, params, run["policy"](p), k, 4)

            figures = jax.device_get(jax.jit(jax.vmap(greedy))(run["state"], keys))
            optimal_rate = np.asarray(figures["optimal"]).mean(axis=1)  # per seed
            reached = optimal_rate > 0.5
            lo, hi = wilson(int(reached.sum()), len(reached))
            per_step = np.asarray(figures["return"]).mean(axis=1) / (2 * params.max_steps)
            rows.append({
                "game": game, "k": kwargs.get("k"), "learner": name,
                "config": run["config"], "hyperparams": run["hyperparams"],
                "env_steps_per_seed": run["config"].total_env_steps,
                "payoff_table": payoffs, "seeds": len(reached),
                "optimal_fraction": float(reached.mean()), "optimal_fraction_ci95": [lo, hi],
                "greedy_payoff_per_step": ci(per_step), "timing": run["timing"]})
    return rows


def matrix_table(rows: list[dict[str, Any]]) -> str:
    head = f"{GAME_HEAD} {'learner':<20} {'reach optimum [95% CI]':<24} {'greedy payoff':>15}"
    return table(head, (f"{game_cells(r)} {r['learner']:<20} "
                        f"{fraction_ci(r['optimal_fraction'], r['optimal_fraction_ci95']):<26} "
                        f"{pm(r['greedy_payoff_per_step'], '.1f'):>15}" for r in rows))


# --------------------------------------------------------------------------------------------
# 2 and 3. particle tasks and applications
# --------------------------------------------------------------------------------------------
def run_env(env_id: str, kwargs: dict[str, Any], steps: int, args: argparse.Namespace,
            learners: Sequence[str] = TEAM_LEARNERS) -> dict[str, Any]:
    env, params = make(env_id, **kwargs)
    log(f"{env_id}: {', '.join(learners)}; {args.seeds} seeds x {steps:,} env steps ...")
    eval_keys = jax.random.split(jax.random.PRNGKey(args.seed + 1), args.seeds)
    refs = {"random": lambda env, _: random_policy(env), **reference_policies(env)}
    references = evaluate_policies(env, params, {n: (lambda _, f=f: f(env, params), None)
                                                 for n, f in refs.items()},
                                   eval_keys, args.eval_episodes)
    runs = []
    for name in learners:
        run = train_seeds(name, env, params, steps, args.seeds, args.seed, quick=args.quick)
        evaluation = evaluate_policies(env, params, {"greedy": (run["policy"], run["state"])},
                                       eval_keys, args.eval_episodes)["greedy"]
        metrics = run["metrics"]
        x = np.asarray(metrics["env_steps"])[0]
        curves = {k: learning_curve(x, np.asarray(metrics[k], np.float64))
                  for k in ("episode_return", EXTRA_METRIC.get(env_id)) if k in metrics}
        runs.append({"variant": name, "config": run["config"],
                     "hyperparams": run["hyperparams"], "timing": run["timing"],
                     "greedy_evaluation": evaluation, "learning_curves": curves})
    return {"env": env_id, "env_kwargs": kwargs, "num_agents": env.num_agents,
            "episode_steps": int(params.max_steps), "env_steps_per_seed": steps,
            "references": references, "runs": runs}


def env_table(section: dict[str, Any]) -> str:
    metrics = [k for k in next(iter(section["references"].values()))
               if k not in ("return", "length", "completed", "episodes_per_seed", "wall_s")]
    width = max(14, *(len(n) for n in section["references"]))
    head = (f"{'policy':<{width}} {'team return':>16} "
            + " ".join(f"{m[:12]:>14}" for m in metrics)
            + f" {'train s':>8} {'compile s':>9}")
    title = (f"{section['env']} ({section['num_agents']} agents, "
             f"{section['env_steps_per_seed']:,} env steps per seed)")

    def row(name: str, ev: dict[str, Any], timing: dict[str, Any] | None) -> str:
        cells = " ".join(f"{pm(ev.get(m), '.3f'):>14}" for m in metrics)
        run_s = fmt(timing["run_s"], ".0f") if timing else "-"
        comp = fmt(timing["trace_and_compile_s"], ".1f") if timing else "-"
        return f"{name:<{width}} {pm(ev['return'], '.2f'):>16} {cells} {run_s:>8} {comp:>9}"

    lines = [row(run["variant"], run["greedy_evaluation"], run["timing"])
             for run in section["runs"]]
    lines += [row(name, ev, None) for name, ev in section["references"].items()]
    return f"{title}\n{table(head, lines)}"


# --------------------------------------------------------------------------------------------
# 4. JaxMARL's VDN and QMIX on spread
# --------------------------------------------------------------------------------------------
def run_jaxmarl(args: argparse.Namespace, teams: dict[str, Any] | None) -> dict[str, Any]:
    repo = Path(args.jaxmarl_repo).resolve()
    info: dict[str, Any] = {"status": "ok", "repo": str(repo), "commit": git_commit(repo),
                            "jaxmarl_version": jaxmarl_version(), "env": JAXMARL_SPREAD,
                            "baselines": {}}
    test_envs = 32 if args.quick else None
    for name, spec in JAXMARL_BASELINES.items():
        module = load_script(repo, spec["script"])
        defaults = qlearning_config(repo, spec["config"])
        if defaults["ENV_NAME"] != JAXMARL_SPREAD:
            raise ValueError(f"{spec['config']}: ENV_NAME is {defaults['ENV_NAME']}")
        entry = {**spec, "default_config": defaults}
        entry["throughput_run"] = run_jaxmarl_qlearning(
            module, defaults, name, steps=args.jaxmarl_timing_steps, seeds=args.seeds,
            test=False)
        entry["return_run"] = run_jaxmarl_qlearning(
            module, defaults, name, steps=args.steps, seeds=args.seeds, test=True,
            test_num_envs=test_envs)
        info["baselines"][name] = entry
    # ours, like for like: VDN with vdn_ff_mpe.yaml's settings; QMIX from part 2 (spread)
    env, params = make("spread-v3", num_agents=3)
    vdn_settings = {**VDN_FF_MATCHED, **(Q_QUICK if args.quick else {})}
    run = train_seeds("VDN", env, params, args.steps, args.seeds, args.seed,
                      q_settings=vdn_settings)
    evaluation = evaluate_policies(env, params, {"greedy": (run["policy"], run["state"])},
                                   jax.random.split(jax.random.PRNGKey(args.seed + 1),
                                                    args.seeds),
                                   args.eval_episodes)["greedy"]
    ours = {"VDN": {"settings": "matched to vdn_ff_mpe.yaml", "config": run["config"],
                    "timing": run["timing"], "greedy_evaluation": evaluation}}
    spread = next((s for s in (teams or {}).get("envs", []) if s["env"] == "spread-v3"), None)
    qmix = next((r for r in spread["runs"] if r["variant"] == "QMIX"), None) if spread else None
    if qmix is not None:
        ours["QMIX"] = {"settings": "part 2 (ql_rnn_mpe.yaml's settings)",
                        "config": qmix["config"], "timing": qmix["timing"],
                        "greedy_evaluation": qmix["greedy_evaluation"]}
    info["ours"] = ours
    rows = []
    for name, entry in info["baselines"].items():
        mine = ours.get(name)
        theirs = entry["throughput_run"]["timing"]
        ret = entry["return_run"]
        rows.append({
            "algorithm": name,
            "ours_env_steps_per_s": mine["timing"]["env_steps_per_s"] if mine else None,
            "jaxmarl_env_steps_per_s": theirs["env_steps_per_s"],
            "ratio": (mine["timing"]["env_steps_per_s"] / theirs["env_steps_per_s"])
            if mine else None,
            "ours_compile_s": mine["timing"]["trace_and_compile_s"] if mine else None,
            "jaxmarl_compile_s": theirs["trace_and_compile_s"],
            "ours_return": mine["greedy_evaluation"]["return"] if mine else None,
            "jaxmarl_return_x25": ret["final_per_step_x25"],
            "jaxmarl_return": ret["final_team_return"],
            "jaxmarl_test_env_steps": ret["final_test_env_steps"]})
    info["rows"] = rows
    return info


def jaxmarl_table(info: dict[str, Any]) -> str:
    head = (f"{'algorithm':<9} {'ours steps/s':>13} {'JaxMARL steps/s':>16} {'ratio':>6} "
            f"{'compile ours/JaxMARL s':>23} {'return ours':>14} {'JaxMARL (x25/26)':>17}")
    lines = []
    for r in info["rows"]:
        lines.append(
            f"{r['algorithm']:<9} {fmt(r['ours_env_steps_per_s'], ',.0f'):>13} "
            f"{fmt(r['jaxmarl_env_steps_per_s'], ',.0f'):>16} {fmt(r['ratio'], '.2f'):>6} "
            f"{fmt(r['ours_compile_s'], '.1f'):>11} / {fmt(r['jaxmarl_compile_s'], '.1f'):<9} "
            f"{pm(r['ours_return'], '.1f'):>14} {pm(r['jaxmarl_return_x25'], '.1f'):>17}")
    return table(head, lines)


# --------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = benchmark_parser(__doc__)
    p.add_argument("--quick", action="store_true", help="tiny budgets, for a smoke test")
    p.add_argument("--seeds", type=int, default=None,
                   help="seeds per learner, parts 2-4 (default 8, quick 2)")
    p.add_argument("--matrix-seeds", type=int, default=None,
                   help="seeds per learner on the matrix games (default 32, quick 4)")
    p.add_argument("--matrix-steps", type=int, default=None,
                   help="env steps per seed on the matrix games (default 20,000; quick 2000)")
    p.add_argument("--steps", type=int, default=None,
                   help="env steps per seed on spread and tracking, and of the JaxMARL return "
                        "runs (default 1,000,000; quick 4096)")
    p.add_argument("--app-steps", type=int, default=None,
                   help="env steps per seed on the applications (default 500,000; quick 4096)")
    p.add_argument("--jaxmarl-timing-steps", type=int, default=None,
                   help="env steps per seed of JaxMARL's throughput runs (default --steps / 4)")
    p.add_argument("--eval-episodes", type=int, default=None,
                   help="greedy evaluation episodes per seed (default 256, quick 8)")
    p.add_argument("--skip-jaxmarl", action="store_true", help="do not run JaxMARL's baselines")
    p.add_argument("--jaxmarl-repo", default=os.environ.get("JAXMARL_REPO"),
                   help="JaxMARL checkout with baselines/ (default $JAXMARL_REPO)")
    p.add_argument("--only", nargs="+", choices=SECTIONS, default=None,
                   help="run only these parts (default all)")
    p.add_argument("--seed", type=int, default=0, help="base PRNG seed")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    args = p.parse_args(argv)
    quick = args.quick
    defaults = {"seeds": 2 if quick else 8, "matrix_seeds": 4 if quick else 32,
                "matrix_steps": 2000 if quick else 20_000, "steps": 4096 if quick else 1_000_000,
                "app_steps": 4096 if quick else 500_000, "eval_episodes": 8 if quick else 256}
    fill_defaults(args, defaults)
    if args.jaxmarl_timing_steps is None:
        args.jaxmarl_timing_steps = max(1, args.steps // 4)
    check_at_least_one(p, args, "seeds", "matrix_seeds", "matrix_steps", "steps", "app_steps",
                       "jaxmarl_timing_steps", "eval_episodes")
    args.only = list(args.only or SECTIONS)
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    out, start, data = start_run(
        "mechanisms", argv, args,
        TRAINING_METHOD + "; greedy evaluation of every seed's final policy; mean ± 95% "
        "Student-t CI over seeds, Wilson intervals for fractions")
    data["settings_detail"] = {
        "hysteretic_beta": HYSTERETIC_BETA, "matrix": {
            "tabular_hp": MATRIX_TABULAR_HP, "q_config": MATRIX_Q_CONFIG, "q_hp": MATRIX_Q_HP,
            "qmix": MATRIX_QMIX_MIXER,
            "ppo_config": MATRIX_PPO_CONFIG, "ppo_hp": MATRIX_PPO_HP},
        "q_config": Q_CONFIG, "q_hp": Q_HP, "qmix": QMIX_MIXER, "ppo_config": PPO_CONFIG,
        "ppo_hp": PPO_HP, "vdn_ff_matched": VDN_FF_MATCHED}
    data["plots"] = []

    def save() -> None:
        save_results(out / "results.json", data, start)

    def env_learners(i: int) -> tuple[str, ...]:
        """The learners of a section's env ``i``: --quick, one of QUICK_ENV_LEARNERS in turn
        (the matrix part runs all of them), to stay a smoke test."""
        if args.quick:
            return (QUICK_ENV_LEARNERS[i % len(QUICK_ENV_LEARNERS)],)
        return TEAM_LEARNERS

    def env_section(part: str, envs: Sequence[tuple[str, dict[str, Any]]], steps: int) -> None:
        section: dict[str, Any] = {"envs": []}
        data[part] = section  # saved with each env that ends
        for i, (env_id, kwargs) in enumerate(envs):
            learners = env_learners(i)
            result = run_env(env_id, kwargs, steps, args, learners)
            section["envs"].append(result)
            data["plots"].append(plot_section_curves(
                result, out / f"learning_curves_{env_id}.png",
                f"{env_id}: {', '.join(learners)} training, mean ± 95% CI over seeds",
                EXTRA_METRIC.get(env_id)))
            save()
            log(env_table(result))

    if "matrix" in args.only:
        data["matrix"] = run_matrix(args)
        save()
        log(matrix_table(data["matrix"]))
    if "teams" in args.only:
        env_section("teams", TEAM_ENVS, args.steps)
    if "apps" in args.only:
        env_section("apps", APP_ENVS, args.app_steps)
    if "jaxmarl" in args.only:
        data["jaxmarl"] = run_peer(args, "VDN/QMIX", lambda: run_jaxmarl(args, data.get("teams")))
        save()
    data["machine"]["other_cpu_busy_end"] = other_cpu_busy()
    save()

    if "matrix" in data:
        print(f"matrix games: fraction of {args.matrix_seeds} seeds whose greedy joint action "
              f"is optimal ({args.matrix_steps:,} env steps per seed; payoff per agent-step):")
        print(matrix_table(data["matrix"]))
    for part in ("teams", "apps"):
        for section in data.get(part, {}).get("envs", []):
            print(f"\n{env_table(section)}")
    jm = data.get("jaxmarl")
    if jm:
        if jm.get("status") == "ok":
            print(f"\nJaxMARL on {JAXMARL_SPREAD} ({args.seeds} seeds; its episodes last "
                  f"{JAXMARL_SPREAD_STEPS} steps, its return scaled x25/26):")
            print(jaxmarl_table(jm))
        else:
            print(f"\nJaxMARL: {jm.get('status')} ({jm.get('reason') or jm.get('error')})")
    print(f"\nresults: {out / 'results.json'}")
    return data


if __name__ == "__main__":
    main()
