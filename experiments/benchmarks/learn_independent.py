"""Independent learners end to end, and JaxMARL's IQL on spread as the peer.

Run from the repository root (not in CI; about half an hour on a 2-core CPU)::

    python -m experiments.benchmarks.learn_independent --jaxmarl-repo /path/to/JaxMARL
    python -m experiments.benchmarks.learn_independent --quick --skip-jaxmarl --out /tmp/li
    # only the spread throughput pair, back to back (to re-measure on an idle machine):
    python -m experiments.benchmarks.learn_independent --throughput-only
        --dqn-steps 500000 --jaxmarl-timing-steps 500000 --jaxmarl-repo /path/to/JaxMARL

What is run
-----------
1. Tabular Q-learning (``learners.tabular_q``) on ``climbing-v1`` and ``penalty-v1``
   (k = 0, -25, -100): every exploration setting x many seeds in one ``jit(vmap(train))``
   call per game. For every seed, the final greedy joint action (argmax of each agent's Q row
   at the single stateless index) is read off and scored against the payoff table.
2. DQN (``learners.dqn``) on ``spread-v3`` (3 agents) and ``tracking-v1``, ``--seeds`` seeds
   vmapped in one program, its config matched item by item to JaxMARL's IQL defaults (see
   ``matched_config``). The final greedy policy is evaluated (``--eval-episodes`` per seed)
   next to ``random_policy`` and, on tracking, ``greedy_chase_policy``. Learning curves
   (per-update ``episode_return`` of the epsilon-greedy behaviour, mean and 95% CI over
   seeds) are saved as PNG. On spread, also a throughput row of our *recurrent* DQN matched
   to JaxMARL's GRU Q-network (``presets.DQN_RNN_MATCHED``), at its throughput run's steps
   and seeds: GRU against GRU, training time only.
3. JaxMARL's ``baselines/QLearning/iql_rnn.py`` (GRU Q-network, independent learners with
   parameter sharing) on ``MPE_simple_spread_v3``, run unmodified from a checkout: the file
   is loaded with ``importlib`` and its ``make_train(config, env)`` is called with its own
   default config (``config/config.yaml`` + ``config/alg/ql_rnn_mpe.yaml``, merged as its
   hydra entry point does with ``+alg=ql_rnn_mpe``), overriding only TOTAL_TIMESTEPS,
   NUM_SEEDS and (for the throughput run) TEST_DURING_TRAINING. Two runs: a throughput run
   without its periodic greedy tests (``--jaxmarl-timing-steps``), and a return run with
   them (``--jaxmarl-steps``, ``--jaxmarl-seeds``). Its ``train`` returns no per-update
   metrics (they go to wandb only), so its final return is the latest greedy test kept in
   its returned runner state (TEST_NUM_ENVS episodes, every TEST_INTERVAL of training).

Compile time (trace + lower + XLA compile) is always reported apart from the run time.
Every training run is timed once (the budgets are too long for repeats). Throughput is env
steps per second over all seeds together and per seed.

JaxMARL peer set-up (its Q-learning baselines are not in the PyPI package)::

    git clone https://github.com/FLAIROx/JaxMARL /path/to/JaxMARL   # measured at c793d09
    .venv/bin/pip install --no-deps jaxmarl==0.2.0
    .venv/bin/pip install hydra-core omegaconf wandb safetensors gymnax

``import jaxmarl`` then resolves to the PyPI 0.2.0 package (whose MPE and wrappers are the
same files as the checkout's); only the baseline script is taken from the checkout.
"""

from jaxmarl_coop.runtime import configure_xla

configure_xla()  # before any JAX computation: safe XLA_FLAGS on small CPU machines

import argparse  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
from collections import Counter  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from experiments.benchmarks.common import (  # noqa: E402
    GAME_HEAD,
    JAXMARL_SPREAD,
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
    machine_summary,
    other_cpu_busy,
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
from jaxmarl_coop.envs import greedy_chase_policy, make, random_policy  # noqa: E402
from jaxmarl_coop.learners import dqn, tabular_q  # noqa: E402
from jaxmarl_coop.learners.base import stack_hyperparams  # noqa: E402
from jaxmarl_coop.presets import (  # noqa: E402
    DQN_HP,
    DQN_MATCHED,
    DQN_QUICK,
    DQN_RNN_MATCHED,
    TABULAR_EXPLORATION,
    TABULAR_HP,
)

DEFAULT_OUT = "runs/bench/learn_independent"
JAXMARL_SCRIPT = "baselines/QLearning/iql_rnn.py"
JAXMARL_CONFIG = "baselines/QLearning/config/config.yaml"
JAXMARL_ALG_CONFIG = "baselines/QLearning/config/alg/ql_rnn_mpe.yaml"

#: (game id, env kwargs) of the tabular study.
TABULAR_GAMES = (("climbing-v1", {}), ("penalty-v1", {"k": 0.0}),
                 ("penalty-v1", {"k": -25.0}), ("penalty-v1", {"k": -100.0}))
#: The tabular settings (TABULAR_HP, TABULAR_EXPLORATION) and DQN's, matched to JaxMARL
#: IQL's defaults (DQN_MATCHED, DQN_HP, DQN_QUICK), are in ``jaxmarl_coop.presets``.
DQN_ENVS = (("spread-v3", {"num_agents": 3}), ("tracking-v1", {}))


# --------------------------------------------------------------------------------------------
# 1. tabular Q on matrix games
# --------------------------------------------------------------------------------------------
def run_tabular(game: str, kwargs: dict[str, float], seeds: int,
                config: tabular_q.TabularQConfig, seed: int) -> list[dict[str, Any]]:
    """Every exploration setting x ``seeds`` seeds of one game in one jitted call.

    The settings share the seeds' keys (common random numbers); one row per setting.
    """
    env, params = make(game, **kwargs)
    learner = tabular_q.make_learner(config, env, params)
    settings = list(TABULAR_EXPLORATION)
    hps = [stack_hyperparams(config.hyperparams(**TABULAR_HP, **TABULAR_EXPLORATION[name]),
                             seeds) for name in settings]
    hp = jax.tree.map(lambda *xs: jnp.concatenate(xs), *hps)
    keys = jnp.tile(jax.random.split(jax.random.PRNGKey(seed), seeds), (len(settings), 1))
    (state, metrics), timing = timed_train(jax.vmap(learner.train), keys, hp)
    add_throughput(timing, seeds * len(settings), config.total_env_steps)
    timing["covers"] = f"all {len(settings)} exploration settings of this game"
    payoffs = np.asarray(env.payoff_tables(params)[0])
    q_all = np.asarray(state.q)[:, :, 0, :]  # (settings*seeds, agents, actions): index 0
    last_optimal = np.asarray(metrics["episode_optimal"])[:, -1]
    rows = []
    for i, name in enumerate(settings):
        q = q_all[i * seeds:(i + 1) * seeds]
        joint = q.argmax(axis=-1)  # (seeds, 2), first index on (measure-zero) ties
        payoff = payoffs[joint[:, 0], joint[:, 1]]
        optimal = payoff >= payoffs.max()
        counts = Counter(f"({a},{b})" for a, b in joint.tolist())
        lo, hi = wilson(int(optimal.sum()), seeds)
        rows.append({
            "game": game, "k": kwargs.get("k"), "exploration": name,
            "hyperparams": {**TABULAR_HP, **TABULAR_EXPLORATION[name]},
            "config": {"num_envs": config.num_envs, "rollout_length": config.rollout_length,
                       "num_updates": config.num_updates,
                       "env_steps_per_seed": config.total_env_steps},
            "payoff_table": payoffs, "seeds": seeds,
            "optimal_fraction": float(optimal.mean()), "optimal_fraction_ci95": [lo, hi],
            "greedy_payoff": ci(payoff),
            "joint_actions": dict(counts.most_common()),
            "final_q": {"mean_over_seeds": q.mean(0), "per_seed": q},
            "last_update_optimal_rate": ci(last_optimal[i * seeds:(i + 1) * seeds]),
            "timing": timing,
        })
    return rows


def tabular_table(rows: list[dict[str, Any]]) -> str:
    head = (f"{GAME_HEAD} {'exploration':<21} {'optimal [95% CI]':<19} {'greedy payoff':>14}"
            "  joint actions (seeds)")
    return table(head, (f"{game_cells(r)} {r['exploration']:<21} "
                        f"{fraction_ci(r['optimal_fraction'], r['optimal_fraction_ci95']):<22}"
                        f"{pm(r['greedy_payoff']):>14}  " + " ".join(
                            f"{a}×{n}" for a, n in r["joint_actions"].items()) for r in rows))


# --------------------------------------------------------------------------------------------
# 2. DQN on spread and tracking
# --------------------------------------------------------------------------------------------
def dqn_config(steps: int, quick: bool) -> dqn.DQNConfig:
    settings = {**DQN_MATCHED, **(DQN_QUICK if quick else {})}
    per_update = settings["num_envs"] * settings["rollout_length"]
    return dqn.DQNConfig(num_updates=max(1, math.ceil(steps / per_update)), **settings)


def run_dqn(env_id: str, kwargs: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    env, params = make(env_id, **kwargs)
    config = dqn_config(args.dqn_steps, args.quick)
    learner = dqn.make_learner(config, env, params)
    hp = config.hyperparams(**DQN_HP)
    keys = jax.random.split(jax.random.PRNGKey(args.seed), args.seeds)
    log(f"DQN {env_id}: {args.seeds} seeds x {config.total_env_steps:,} env steps "
         f"({config.num_updates} updates) ...")
    (state, metrics), timing = timed_train(jax.vmap(learner.train), keys,
                                            stack_hyperparams(hp, args.seeds))
    add_throughput(timing, args.seeds, config.total_env_steps)
    log(f"  compile {timing['trace_and_compile_s']:.1f} s, run {timing['run_s']:.1f} s, "
         f"{timing['env_steps_per_s']:,.0f} env steps/s (all seeds)")
    metrics = jax.device_get(metrics)
    policies: dict[str, Any] = {
        "dqn_greedy": (lambda p: dqn.make_policy(config, env, p), state.params),
        "random": (lambda _: random_policy(env), None)}
    if env_id.startswith("tracking"):
        policies["greedy_chase"] = (lambda _: greedy_chase_policy(env), None)
    eval_keys = jax.random.split(jax.random.PRNGKey(args.seed + 1), args.seeds)
    evaluation = {} if args.throughput_only else evaluate_policies(env, params, policies,
                                                                  eval_keys, args.eval_episodes)
    del state
    steps = np.asarray(metrics["env_steps"])[0]
    curve = learning_curve(steps, np.asarray(metrics["episode_return"], np.float64))
    return {"env": env_id, "env_kwargs": kwargs, "num_agents": env.num_agents,
            "episode_steps": int(params.max_steps),
            "config": config, "hyperparams": hp, "timing": timing,
            "evaluation": evaluation, "learning_curve": curve,
            "final_loss": ci(np.asarray(metrics["loss"])[:, -1]),
            "last_update_episode_return": ci(np.asarray(metrics["episode_return"])[:, -1])}


def run_recurrent_throughput(args: argparse.Namespace) -> dict[str, Any]:
    """Our recurrent IQL matched to JaxMARL's GRU network (``DQN_RNN_MATCHED``) on spread, at
    the JaxMARL throughput run's steps and seeds: training time only, compile apart."""
    env, params = make("spread-v3", num_agents=3)
    settings = {**DQN_RNN_MATCHED, **(DQN_QUICK if args.quick else {}), "batch_size": 32}
    per_update = settings["num_envs"] * settings["rollout_length"]
    config = dqn.DQNConfig(num_updates=max(1, math.ceil(args.jaxmarl_timing_steps
                                                        / per_update)), **settings)
    learner = dqn.make_learner(config, env, params)
    seeds = args.jaxmarl_timing_seeds
    keys = jax.random.split(jax.random.PRNGKey(args.seed), seeds)
    log(f"recurrent DQN spread-v3 (throughput): {seeds} seeds x {config.total_env_steps:,} "
        "env steps ...")
    _, timing = timed_train(jax.vmap(learner.train), keys,
                            stack_hyperparams(config.hyperparams(**DQN_HP), seeds))
    add_throughput(timing, seeds, config.total_env_steps)
    log(f"  compile {timing['trace_and_compile_s']:.1f} s, run {timing['run_s']:.1f} s, "
        f"{timing['env_steps_per_s']:,.0f} env steps/s (all seeds)")
    return {"env": "spread-v3", "config": config, "timing": timing}


# --------------------------------------------------------------------------------------------
# 3. JaxMARL IQL (RNN), unmodified from a checkout
# --------------------------------------------------------------------------------------------
def run_jaxmarl(args: argparse.Namespace) -> dict[str, Any]:
    repo = Path(args.jaxmarl_repo).resolve()
    module = load_script(repo, JAXMARL_SCRIPT)
    defaults = qlearning_config(repo, JAXMARL_ALG_CONFIG)
    import jaxmarl

    info = {"status": "ok", "repo": str(repo), "commit": git_commit(repo),
            "script": JAXMARL_SCRIPT, "config_files": [JAXMARL_CONFIG, JAXMARL_ALG_CONFIG],
            "default_config": defaults, "jaxmarl_version": jaxmarl_version(),
            "jaxmarl_module": os.path.dirname(jaxmarl.__file__), "env": JAXMARL_SPREAD}
    if defaults["ENV_NAME"] != JAXMARL_SPREAD:
        raise ValueError(f"its default ENV_NAME is {defaults['ENV_NAME']}, not {JAXMARL_SPREAD}")
    test_envs = 32 if args.quick else None
    info["throughput_run"] = run_jaxmarl_qlearning(
        module, defaults, "IQL", steps=args.jaxmarl_timing_steps,
        seeds=args.jaxmarl_timing_seeds, test=False)
    if not args.throughput_only:
        info["return_run"] = run_jaxmarl_qlearning(
            module, defaults, "IQL", steps=args.jaxmarl_steps, seeds=args.jaxmarl_seeds,
            test=True, test_num_envs=test_envs)
    return info


def matched_config(cfg: dqn.DQNConfig, defaults: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Item by item: our DQN setting next to JaxMARL IQL's (its defaults when loaded)."""
    d = defaults or {}

    def their(key: str, fallback: Any) -> Any:
        return d.get(key, fallback)

    hp = DQN_HP
    return [
        {"item": "parallel envs", "ours": cfg.num_envs, "jaxmarl": their("NUM_ENVS", 8)},
        {"item": "env steps per env per update", "ours": cfg.rollout_length,
         "jaxmarl": their("NUM_STEPS", 26)},
        {"item": "transitions per gradient step", "ours": cfg.batch_size,
         "jaxmarl": f"{their('BUFFER_BATCH_SIZE', 32)} trajectories x "
                    f"{their('NUM_STEPS', 26)} steps (25 TD targets each)"},
        {"item": "replay capacity (transitions)", "ours": cfg.buffer_size,
         "jaxmarl": f"{their('BUFFER_SIZE', 5000)} trajectories x {their('NUM_STEPS', 26)}"},
        {"item": "gradient steps per update", "ours": cfg.num_epochs,
         "jaxmarl": their("NUM_EPOCHS", 1)},
        {"item": "network", "ours": f"MLP {cfg.hidden} relu",
         "jaxmarl": f"Dense {their('HIDDEN_SIZE', 64)} relu + GRU {their('HIDDEN_SIZE', 64)}"},
        {"item": "parameter sharing + one-hot agent id", "ours": cfg.share_params,
         "jaxmarl": True},
        {"item": "learning rate", "ours": f"{hp['lr']} linear decay to 0"
         if cfg.anneal_lr else hp["lr"],
         "jaxmarl": f"{their('LR', 0.005)} linear decay to 1e-10"
         if their("LR_LINEAR_DECAY", True) else their("LR", 0.005)},
        {"item": "optimiser", "ours": "adam", "jaxmarl": "radam"},
        {"item": "max grad norm", "ours": hp["max_grad_norm"],
         "jaxmarl": their("MAX_GRAD_NORM", 25)},
        {"item": "epsilon", "ours": f"{hp['epsilon_start']} -> {hp['epsilon_end']} over "
                                    f"{hp['epsilon_decay_fraction']:.0%} of steps",
         "jaxmarl": f"{their('EPS_START', 1.0)} -> {their('EPS_FINISH', 0.05)} over "
                    f"{their('EPS_DECAY', 0.1):.0%} of updates"},
        {"item": "target update (updates)", "ours": f"every {cfg.target_update_interval}, "
                                                   f"tau {hp['tau']}",
         "jaxmarl": f"every {their('TARGET_UPDATE_INTERVAL', 200)}, tau {their('TAU', 1.0)}"},
        {"item": "gamma", "ours": hp["gamma"], "jaxmarl": their("GAMMA", 0.9)},
        {"item": "learning starts (env steps)", "ours": cfg.learning_starts,
         "jaxmarl": their("LEARNING_STARTS", 10000)},
        {"item": "target", "ours": "double DQN, 1-step" if cfg.double_dqn else "DQN, 1-step",
         "jaxmarl": "double DQN, 1-step"},
        {"item": "loss", "ours": "0.5 * mean squared TD", "jaxmarl": "mean squared TD"},
        {"item": "episodes", "ours": "auto-reset, run on across updates",
         "jaxmarl": "reset every update (one 26-step episode per env)"},
    ]


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------
def dqn_table(runs: list[dict[str, Any]], jaxmarl: dict[str, Any] | None) -> str:
    head = (f"{'env':<12} {'policy':<22} {'team return':>16} {'per-step x25':>16} "
            f"{'mean dist':>9} {'captured':>8} {'collisions':>10}")
    lines = []
    for run in runs:
        scale = 25.0 / run["episode_steps"]
        for name, ev in run["evaluation"].items():
            per_step = {"mean": ev["return"]["mean"] * scale, "ci95": ev["return"]["ci95"] * scale}
            lines.append(f"{run['env']:<12} {name:<22} {pm(ev['return']):>16} "
                         f"{pm(per_step):>16} "
                         f"{fmt(ev.get('mean_distance', {}).get('mean'), '.3f'):>9} "
                         f"{fmt(ev.get('captured', {}).get('mean'), '.3f'):>8} "
                         f"{fmt(ev.get('collisions', {}).get('mean'), '.3f'):>10}")
    ret = (jaxmarl or {}).get("return_run", {})
    if ret.get("final_team_return"):
        name = f"jaxmarl_iql_rnn ({ret['timing']['seeds']}s)"
        lines.append(f"{'spread(JM)':<12} {name:<22} {pm(ret['final_team_return']):>16} "
                     f"{pm(ret['final_per_step_x25']):>16} {'-':>9} {'-':>8} {'-':>10}")
    return table(head, lines)


def timing_table(rows: list[tuple[str, dict[str, Any]]]) -> str:
    head = (f"{'run':<34} {'seeds':>5} {'steps/seed':>11} {'compile s':>9} {'run s':>8} "
            f"{'env steps/s':>12} {'per seed':>10} {'others busy':>11}")
    lines = []
    for name, t in rows:
        lines.append(f"{name:<34} {t['seeds']:>5} {t['env_steps_per_seed']:>11,} "
                     f"{t['trace_and_compile_s']:>9.1f} {t['run_s']:>8.1f} "
                     f"{t['env_steps_per_s']:>12,.0f} {t['env_steps_per_s_per_seed']:>10,.0f} "
                     f"{fmt(t.get('other_cpu_busy'), '.0%'):>11}")
    return table(head, lines)


def plot_curves(runs: list[dict[str, Any]], jaxmarl: dict[str, Any] | None, out: Path
                ) -> list[str]:
    """One PNG per env: mean ± 95% CI over seeds of the per-update episode return."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    for run in runs:
        curve = run["learning_curve"]
        x, y = np.asarray(curve["env_steps"]), np.asarray(curve["mean"])
        half = np.nan_to_num(np.asarray(curve["ci95"], np.float64))
        fig, ax = plt.subplots(figsize=(7, 4.2))
        ax.plot(x, y, label=f"DQN, epsilon-greedy training episodes ({run['timing']['seeds']} "
                            "seeds)")
        ax.fill_between(x, y - half, y + half, alpha=0.25)
        colours = {"dqn_greedy": "C0", "random": "C3", "greedy_chase": "C2"}
        for name, ev in run["evaluation"].items():
            ax.axhline(ev["return"]["mean"], ls="--", lw=1, color=colours.get(name, "k"),
                       label=f"{name} (final evaluation)")
        ret = (jaxmarl or {}).get("return_run", {})
        if run["env"].startswith("spread") and ret.get("final_team_return"):
            ax.errorbar([ret["final_test_env_steps"]],
                        [ret["final_per_step_x25"]["mean"]],
                        yerr=[np.nan_to_num(ret["final_per_step_x25"]["ci95"])], fmt="o",
                        color="C1", label="JaxMARL IQL-RNN final greedy test (x25/26)")
        ax.set_xlabel("env steps (per seed)")
        ax.set_ylabel("team return per episode")
        ax.set_title(f"{run['env']}: independent DQN, mean ± 95% CI over seeds")
        ax.legend(fontsize=7, loc="lower right")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = out / f"learning_curve_{run['env']}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        files.append(str(path))
    return files


# --------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = benchmark_parser(__doc__)
    p.add_argument("--quick", action="store_true", help="tiny budgets, for a smoke test")
    p.add_argument("--seeds", type=int, default=None, help="DQN seeds (default 8, quick 2)")
    p.add_argument("--tabular-seeds", type=int, default=None,
                   help="tabular Q seeds per game and setting (default 64, quick 8)")
    p.add_argument("--tabular-steps", type=int, default=None,
                   help="env steps per tabular seed (default 10000, quick 250)")
    p.add_argument("--dqn-steps", type=int, default=None,
                   help="env steps per DQN seed (default 2,000,000; quick 1664)")
    p.add_argument("--eval-episodes", type=int, default=None,
                   help="greedy evaluation episodes per seed (default 1024, quick 16)")
    p.add_argument("--skip-jaxmarl", action="store_true", help="do not run JaxMARL's IQL")
    p.add_argument("--jaxmarl-repo", default=os.environ.get("JAXMARL_REPO"),
                   help="JaxMARL checkout holding baselines/QLearning (default $JAXMARL_REPO)")
    p.add_argument("--jaxmarl-steps", type=int, default=None,
                   help="env steps per seed of its return run (default --dqn-steps)")
    p.add_argument("--jaxmarl-seeds", type=int, default=None,
                   help="seeds of its return run (default --seeds)")
    p.add_argument("--jaxmarl-timing-steps", type=int, default=None,
                   help="env steps per seed of its throughput run, no tests "
                        "(default --dqn-steps / 4)")
    p.add_argument("--jaxmarl-timing-seeds", type=int, default=None,
                   help="seeds of its throughput run (default --seeds)")
    p.add_argument("--throughput-only", action="store_true",
                   help="only the spread throughput pair, back to back: our DQN (no "
                        "evaluation) and JaxMARL's run without tests; no tabular, no tracking")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=DEFAULT_OUT,
                   help=f"output folder for results.json and the PNGs (default {DEFAULT_OUT})")
    args = p.parse_args(argv)
    quick = args.quick
    defaults = {"seeds": 2 if quick else 8, "tabular_seeds": 8 if quick else 64,
                "tabular_steps": 250 if quick else 10_000,
                "dqn_steps": 8 * 26 * 8 if quick else 2_000_000,
                "eval_episodes": 16 if quick else 1024}
    fill_defaults(args, defaults)
    if args.jaxmarl_steps is None:
        args.jaxmarl_steps = 8 * 26 * 40 if quick else args.dqn_steps
    if args.jaxmarl_seeds is None:
        args.jaxmarl_seeds = 1 if quick else args.seeds
    if args.jaxmarl_timing_steps is None:
        args.jaxmarl_timing_steps = 8 * 26 * 20 if quick else args.dqn_steps // 4
    if args.jaxmarl_timing_seeds is None:
        args.jaxmarl_timing_seeds = 1 if quick else args.seeds
    check_at_least_one(p, args, "seeds", "tabular_seeds", "tabular_steps", "dqn_steps",
                       "eval_episodes", "jaxmarl_steps", "jaxmarl_seeds",
                       "jaxmarl_timing_steps", "jaxmarl_timing_seeds")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    out, start, data = start_run(
        "learn_independent", argv, args,
        TRAINING_METHOD + "; env steps/s = seeds x env steps per seed / run_s")

    # 1. tabular Q
    tab_rows_per_seed = 25
    tab_config = tabular_q.TabularQConfig(
        num_envs=1, rollout_length=tab_rows_per_seed,
        num_updates=max(1, args.tabular_steps // tab_rows_per_seed))
    data["tabular"] = []
    for game, kwargs in () if args.throughput_only else TABULAR_GAMES:
        data["tabular"].extend(run_tabular(game, kwargs, args.tabular_seeds, tab_config,
                                           args.seed))
    if data["tabular"]:
        log(tabular_table(data["tabular"]))

    # 2. DQN, then 3. JaxMARL right after our spread run (alike load on both sides)
    data["dqn"] = []
    jaxmarl: dict[str, Any] | None = None
    for env_id, kwargs in DQN_ENVS[:1] if args.throughput_only else DQN_ENVS:
        data["dqn"].append(run_dqn(env_id, kwargs, args))
        if env_id == "spread-v3":
            data["dqn_recurrent"] = run_recurrent_throughput(args)
            jaxmarl = run_peer(args, "IQL", lambda: run_jaxmarl(args))
    data["jaxmarl"] = jaxmarl
    spread = data["dqn"][0]
    data["matched_config"] = matched_config(spread["config"],
                                            (jaxmarl or {}).get("default_config"))

    comparison: dict[str, Any] = {}
    if jaxmarl and jaxmarl.get("status") == "ok":
        ours_t, their_t = spread["timing"], jaxmarl["throughput_run"]["timing"]
        comparison = {
            "throughput_ratio": ours_t["env_steps_per_s"] / their_t["env_steps_per_s"],
            "throughput_ratio_per_seed": (ours_t["env_steps_per_s_per_seed"]
                                          / their_t["env_steps_per_s_per_seed"]),
            "compile_ratio": ours_t["trace_and_compile_s"] / their_t["trace_and_compile_s"],
            "recurrent_throughput_ratio": (data["dqn_recurrent"]["timing"]["env_steps_per_s"]
                                           / their_t["env_steps_per_s"]),
            "note": ("throughput: ours (training only) vs JaxMARL's throughput run with its "
                     "periodic greedy tests off; returns: our greedy evaluation vs its own last "
                     "greedy test; JaxMARL's spread episodes last 26 steps, ours 25"),
        }
        ret = jaxmarl.get("return_run")
        if ret and "dqn_greedy" in spread["evaluation"]:
            ours_ret = spread["evaluation"]["dqn_greedy"]["return"]
            comparison.update({
                "ours_final_team_return": ours_ret,
                "ours_final_per_step_x25": ours_ret,  # our spread episodes last 25 steps
                "jaxmarl_final_team_return": ret["final_team_return"],
                "jaxmarl_final_per_step_x25": ret["final_per_step_x25"]})
    data["comparison"] = comparison
    data["plots"] = plot_curves(data["dqn"], jaxmarl, out)
    data["machine"]["other_cpu_busy_end"] = other_cpu_busy()
    save_results(out / "results.json", data, start)

    if data["tabular"]:
        print("Tabular Q (greedy joint action after training; "
              f"alpha {TABULAR_HP['alpha']}, gamma {TABULAR_HP['gamma']}, "
              f"{args.tabular_seeds} seeds x {tab_config.total_env_steps} steps, 1 env):")
        print(tabular_table(data["tabular"]))
        tab_times = [r["timing"] for r in data["tabular"][::len(TABULAR_EXPLORATION)]]
        compile_s = sum(t["trace_and_compile_s"] for t in tab_times)
        print(f"(one jitted call per game: compile {compile_s:.1f} s, "
              f"run {sum(t['run_s'] for t in tab_times):.2f} s in all)\n")
    if not args.throughput_only:
        print(f"DQN final greedy policy ({args.seeds} seeds x {args.eval_episodes} episodes; "
              "mean ± 95% CI over seeds):")
        print(dqn_table(data["dqn"], jaxmarl))
    print("\nDQN config matched to JaxMARL IQL (ql_rnn_mpe.yaml):")
    for m in data["matched_config"]:
        print(f"  {m['item']:<38} ours: {m['ours']!s:<30} JaxMARL: {m['jaxmarl']}")
    rows = [(f"ours DQN {r['env']}", r["timing"]) for r in data["dqn"]]
    rows.append(("ours DQN-GRU spread (matched)", data["dqn_recurrent"]["timing"]))
    if jaxmarl and jaxmarl.get("status") == "ok":
        rows.append(("JaxMARL IQL-RNN spread (no tests)", jaxmarl["throughput_run"]["timing"]))
        if "return_run" in jaxmarl:
            rows.append(("JaxMARL IQL-RNN spread (+tests)", jaxmarl["return_run"]["timing"]))
    print("\nTraining time (compile apart):")
    print(timing_table(rows))
    if comparison:
        print(f"\nthroughput ours / JaxMARL on spread: {comparison['throughput_ratio']:.2f}x "
              f"(compile {spread['timing']['trace_and_compile_s']:.1f} s vs "
              f"{jaxmarl['throughput_run']['timing']['trace_and_compile_s']:.1f} s); "
              f"recurrent, GRU against GRU: {comparison['recurrent_throughput_ratio']:.2f}x")
    if "ours_final_team_return" in comparison:
        print(f"final spread team return: ours {pm(comparison['ours_final_team_return'])} "
              f"(25 steps), JaxMARL {pm(comparison['jaxmarl_final_team_return'])} (26 steps) "
              f"= {pm(comparison['jaxmarl_final_per_step_x25'])} per step x25")
    if jaxmarl and jaxmarl.get("status") != "ok":
        why = jaxmarl.get("reason") or jaxmarl.get("error")
        print(f"\nJaxMARL IQL: {jaxmarl.get('status')} ({why})")
    print("\n" + machine_summary(data["machine"], data["total_wall_s"]))
    print(f"wrote {out / 'results.json'} and {len(data['plots'])} PNG(s)")
    return data


if __name__ == "__main__":
    main()
