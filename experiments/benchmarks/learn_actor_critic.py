"""Actor-critic learners end to end (MAPPO, IPPO, MAA2C, IA2C), and JaxMARL's PPO as the peer.

Run from the repository root (not in CI; about 40 minutes on a 2-core CPU)::

    python -m experiments.benchmarks.learn_actor_critic --jaxmarl-repo /path/to/JaxMARL
    python -m experiments.benchmarks.learn_actor_critic --quick --skip-jaxmarl --out /tmp/lac

What is run
-----------
1. ``spread-v3`` (3 agents): MAPPO (``algorithm="ppo", critic="centralised"``), IPPO (ppo,
   local), MAA2C (a2c, centralised) and IA2C (a2c, local), ``--seeds`` seeds of each in one
   ``jit(vmap(train))`` program per variant, ``--steps`` env steps per seed (``--a2c-steps``
   for the A2C variants). Each seed's final policy is evaluated greedily (``--eval-episodes``
   whole episodes per seed) next to ``random_policy``; the team return is the sum over agents
   (mpe2 scale). The last 5% of the training curve (per-update mean return of the sampled
   policy) is reported too.
2. ``tracking-v1`` (2 agents): MAPPO and IPPO (``--tracking-steps``) against
   ``greedy_chase_policy`` and ``random_policy``, on team return, mean distance to the
   target, captured fraction and collisions per step (episode means, greedy evaluation).
3. Throughput: JaxMARL's ``baselines/IPPO/ippo_ff_mpe.py`` (feed-forward IPPO) and
   ``baselines/MAPPO/mappo_rnn_mpe.py`` (recurrent MAPPO) on ``MPE_simple_spread_v3``, run
   unmodified from a checkout: the file is loaded with ``importlib``, its ``make_train`` is
   called with its own yaml config (loaded with omegaconf) overriding only TOTAL_TIMESTEPS,
   NUM_SEEDS and WANDB_MODE=disabled (``wandb.init(mode="disabled")`` is called first, as its
   ``main`` does, because its per-update ``io_callback`` calls ``wandb.log``). Our IPPO and
   MAPPO run with the same envs, rollout length, epochs, minibatches and network widths (see
   ``matched_config``). Each program is compiled apart (``jit(...).lower(...).compile()``),
   then timed ``--throughput-repeats`` times; env steps/s is the median, for 1 seed and for
   ``--seeds`` vmapped seeds, ours and theirs back to back. With several local devices
   (``--cpu-devices N`` on a CPU) our vmapped seeds are also run sharded over them
   (``jaxmarl_coop.parallel``), each device on its own core; JaxMARL's scripts have no such
   option and run on one device. For the IPPO rows, a ``floor`` row times the matched
   networks' arithmetic alone (``floor_program``: rollout forwards, minibatch forwards and
   backwards, nothing else); its ratio to JaxMARL is the most any implementation could gain
   at matched work on these XLA kernels.

Every training run of parts 1 and 2 is timed once (the budgets are too long for repeats),
compile time apart. Mean ± 95% CI (Student t) over seeds throughout. Curves (mean with a 95%
band over seeds of the per-update ``episode_return`` against env steps) are saved as PNG.

Hangs: flax's orthogonal init is a QR factorisation; vmapped over seeds it becomes a batched
LAPACK call that deadlocks jaxlib 0.10's CPU runtime on 2 cores (see ``jaxmarl_coop.runtime``).
Our networks initialise without LAPACK. JaxMARL's scripts are traced with ``jnp.linalg.qr``
replaced, for the duration of their tracing only, by Gram-Schmidt (``common.qr_by_gram_schmidt``):
the same matrices from the same draws, no LAPACK call; nothing in their files changes. A call
running past ``HANG_TIMEOUT_S`` still makes the process dump its stacks and exit;
results.json is written after every part, and ``--only`` runs in the same ``--out`` folder
add up to one results.json.

JaxMARL peer set-up (its baselines are not in the PyPI package)::

    git clone https://github.com/FLAIROx/JaxMARL /path/to/JaxMARL   # measured at c793d09
    .venv/bin/pip install --no-deps jaxmarl==0.2.0
    .venv/bin/pip install hydra-core omegaconf wandb safetensors gymnax

``import jaxmarl`` then resolves to the PyPI 0.2.0 package (its MPE and wrappers); only the
baseline scripts and their yaml configs are taken from the checkout.
"""

from jaxmarl_coop.runtime import configure_xla, set_cpu_device_count

configure_xla()  # before any JAX computation: safe XLA_FLAGS on small CPU machines

import argparse  # noqa: E402
import contextlib  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from experiments.benchmarks.common import (  # noqa: E402
    JAXMARL_SPREAD,
    TRAINING_METHOD,
    benchmark_parser,
    calls_lapack,
    check_at_least_one,
    ci,
    compile_timed,
    evaluate_policies,
    fill_defaults,
    fmt,
    git_commit,
    jaxmarl_version,
    learning_curve,
    load_script,
    load_yaml,
    log,
    machine_summary,
    other_cpu_busy,
    plot_section_curves,
    pm,
    qr_by_gram_schmidt,
    run_peer,
    save_results,
    start_run,
    table,
    timed_run,
)
from jaxmarl_coop import parallel  # noqa: E402
from jaxmarl_coop.envs import greedy_chase_policy, make, random_policy  # noqa: E402
from jaxmarl_coop.learners import actor_critic as ac  # noqa: E402
from jaxmarl_coop.learners.base import stack_hyperparams  # noqa: E402
from jaxmarl_coop.learners.networks import MLP  # noqa: E402
from jaxmarl_coop.presets import (  # noqa: E402
    A2C_CONFIG,
    IA2C_HP,
    MAA2C_HP,
    PPO_CONFIG,
    PPO_HP,
    PPO_HP_BY_ENV,
)

DEFAULT_OUT = "runs/bench/learn_actor_critic"
SECTIONS = ("spread", "tracking", "throughput")

#: name -> (algorithm, critic, config, hyperparameters): the tuned settings of
#: ``jaxmarl_coop.presets`` (PPO on spread also takes ``PPO_HP_BY_ENV``)
VARIANTS: dict[str, tuple[str, str, dict[str, Any], dict[str, Any]]] = {
    "MAPPO": ("ppo", "centralised", PPO_CONFIG, PPO_HP),
    "IPPO": ("ppo", "local", PPO_CONFIG, PPO_HP),
    "MAA2C": ("a2c", "centralised", A2C_CONFIG, MAA2C_HP),
    "IA2C": ("a2c", "local", A2C_CONFIG, IA2C_HP),
}
SPREAD_VARIANTS = ("MAPPO", "IPPO", "MAA2C", "IA2C")
TRACKING_VARIANTS = ("MAPPO", "IPPO")
SPREAD_TARGET = -35.0  # MAPPO's greedy team return should reach this within the budget
#: greedy chase on tracking-v1 as measured by experiments.reference (README)
TRACKING_GREEDY_README = {"return": 21.7, "mean_distance": 0.294, "captured": 0.667,
                          "collisions": 0.157}

#: JaxMARL baselines: our name -> (script, yaml config, our matched learner config)
JAXMARL_BASELINES: dict[str, dict[str, Any]] = {
    "IPPO": {"script": "baselines/IPPO/ippo_ff_mpe.py",
             "config": "baselines/IPPO/config/ippo_ff_mpe.yaml",
             "ours": {"algorithm": "ppo", "critic": "local", "num_envs": 16,
                      "rollout_length": 128, "num_epochs": 4, "num_minibatches": 4,
                      "hidden": (64, 64), "activation": "tanh", "anneal_lr": True}},
    # where the time goes: the same with one full-batch gradient step per update (the
    # rollout, GAE and one step), so the update's share of the matched rows shows
    "IPPO-1x1": {"script": "baselines/IPPO/ippo_ff_mpe.py",
                 "config": "baselines/IPPO/config/ippo_ff_mpe.yaml",
                 "overrides": {"UPDATE_EPOCHS": 1, "NUM_MINIBATCHES": 1},
                 "ours": {"algorithm": "ppo", "critic": "local", "num_envs": 16,
                          "rollout_length": 128, "num_epochs": 1, "num_minibatches": 1,
                          "hidden": (64, 64), "activation": "tanh", "anneal_lr": True}},
    "MAPPO": {"script": "baselines/MAPPO/mappo_rnn_mpe.py",
              "config": "baselines/MAPPO/config/mappo_homogenous_rnn_mpe.yaml",
              "ours": {"algorithm": "ppo", "critic": "centralised", "num_envs": 16,
                       "rollout_length": 128, "num_epochs": 4, "num_minibatches": 4,
                       "recurrent": True, "rnn_hidden": 128, "hidden": (128,),
                       "activation": "relu", "anneal_lr": True}},
}
#: our config item -> JaxMARL yaml key, checked equal before timing
MATCHED_KEYS = {"num_envs": "NUM_ENVS", "rollout_length": "NUM_STEPS",
                "num_epochs": "UPDATE_EPOCHS", "num_minibatches": "NUM_MINIBATCHES"}


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------
HANG_TIMEOUT_S = 1800  # a timed call running longer dumps the stacks and exits


def _num_updates(steps: int, config: dict[str, Any]) -> int:
    return max(1, math.ceil(steps / (config["num_envs"] * config["rollout_length"])))


def _pm(stats: dict[str, Any] | None, spec: str = ".1f") -> str:
    return pm(stats, spec)


def _param_count(tree: Any) -> int:
    return int(sum(np.size(x) for x in jax.tree.leaves(tree)))


def _tail_mean(y: np.ndarray, fraction: float = 0.05) -> np.ndarray:
    """Per seed, the mean of the last ``fraction`` of the updates (NaNs skipped)."""
    k = max(1, math.ceil(fraction * y.shape[1]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(y[:, -k:], axis=1)


def _first_crossing(curve: dict[str, Any], level: float) -> float | None:
    """Env steps at which the binned mean curve first reaches ``level`` (or None)."""
    for x, y in zip(curve["env_steps"], curve["mean"], strict=True):
        if y >= level:
            return x
    return None


# --------------------------------------------------------------------------------------------
# 1 and 2: training runs and greedy evaluation
# --------------------------------------------------------------------------------------------
def variant_config(name: str, steps: int, env_id: str
                   ) -> tuple[ac.ActorCriticConfig, dict[str, Any]]:
    """The learner config and hyperparameters of a variant on ``env_id``."""
    algorithm, critic, settings, hp = VARIANTS[name]
    config = ac.ActorCriticConfig(algorithm=algorithm, critic=critic,
                                  num_updates=_num_updates(steps, settings), **settings)
    if algorithm == "ppo":
        hp = {**hp, **PPO_HP_BY_ENV.get(env_id, {})}
    return config, dict(hp)


def run_variant(env_id: str, env_kwargs: dict[str, Any], name: str, steps: int,
                args: argparse.Namespace) -> dict[str, Any]:
    """``args.seeds`` seeds of one variant in one jitted program, then greedy evaluation."""
    env, params = make(env_id, **env_kwargs)
    config, hp_values = variant_config(name, steps, env_id)
    learner = ac.make_learner(config, env, params)
    hp = stack_hyperparams(config.hyperparams(**hp_values), args.seeds)
    keys = jax.random.split(jax.random.PRNGKey(args.seed), args.seeds)
    log(f"{name} on {env_id}: {args.seeds} seeds x {config.total_env_steps:,} env steps "
         f"({config.num_updates} updates of {config.num_envs} x {config.rollout_length}) ...")
    compiled, timing = compile_timed(jax.vmap(learner.train), keys, hp)
    (state, metrics), run_timing = timed_run(compiled, keys, hp,
                                             hang_timeout_s=HANG_TIMEOUT_S)
    timing.update(run_timing, seeds=args.seeds, env_steps_per_seed=config.total_env_steps,
                  env_steps_per_s=args.seeds * config.total_env_steps / run_timing["run_s"])
    log(f"  compile {timing['trace_and_compile_s']:.1f} s, run {timing['run_s']:.0f} s, "
         f"{timing['env_steps_per_s']:,.0f} env steps/s (all seeds)")
    del compiled
    metrics = jax.device_get(metrics)
    eval_keys = jax.random.split(jax.random.PRNGKey(args.seed + 1), args.seeds)
    evaluation = evaluate_policies(
        env, params, {"greedy": (lambda p: ac.make_policy(config, env, p), state.params)},
        eval_keys, args.eval_episodes)["greedy"]
    steps_axis = np.asarray(metrics["env_steps"])[0]
    returns = np.asarray(metrics["episode_return"], np.float64)
    curves = {"episode_return": learning_curve(steps_axis, returns)}
    for key in ("episode_collisions", "episode_mean_distance", "episode_captured"):
        if key in metrics:
            curves[key] = learning_curve(steps_axis, np.asarray(metrics[key], np.float64))
    tail = {k[len("episode_"):]: ci(_tail_mean(np.asarray(metrics[k], np.float64)))
            for k in metrics if k.startswith("episode_") and k != "episode_length"}
    algorithm, critic, _, _ = VARIANTS[name]
    return {"variant": name, "env": env_id, "env_kwargs": env_kwargs,
            "algorithm": algorithm, "critic": critic, "num_agents": env.num_agents,
            "episode_steps": int(params.max_steps), "config": config, "hyperparams": hp_values,
            "params_per_seed": _param_count(jax.tree.map(lambda x: x[0], state.params)),
            "timing": timing, "greedy_evaluation": evaluation,
            "training_last_5pct": tail, "learning_curves": curves,
            "final_entropy": ci(np.asarray(metrics["entropy"])[:, -1])}


def reference_policies(env_id: str, env_kwargs: dict[str, Any], args: argparse.Namespace
                       ) -> dict[str, dict[str, Any]]:
    env, params = make(env_id, **env_kwargs)
    policies: dict[str, Any] = {"random": (lambda _: random_policy(env), None)}
    if env_id.startswith("tracking"):
        policies["greedy_chase"] = (lambda _: greedy_chase_policy(env), None)
    eval_keys = jax.random.split(jax.random.PRNGKey(args.seed + 1), args.seeds)
    return evaluate_policies(env, params, policies, eval_keys, args.eval_episodes)


def run_spread(args: argparse.Namespace) -> dict[str, Any]:
    runs = []
    for name in SPREAD_VARIANTS:
        steps = args.steps if VARIANTS[name][0] == "ppo" else args.a2c_steps
        runs.append(run_variant("spread-v3", {"num_agents": 3}, name, steps, args))
    refs = reference_policies("spread-v3", {"num_agents": 3}, args)
    mappo = runs[0]
    greedy = mappo["greedy_evaluation"]["return"]["mean"]
    target = {"level": SPREAD_TARGET, "mappo_greedy_return": mappo["greedy_evaluation"]["return"],
              "reached_by_greedy_mean": bool(greedy >= SPREAD_TARGET),
              "seeds_reaching": int(np.sum(np.asarray(
                  mappo["greedy_evaluation"]["return"]["per_seed"]) >= SPREAD_TARGET)),
              "training_curve_first_reaches_at_env_steps": _first_crossing(
                  mappo["learning_curves"]["episode_return"], SPREAD_TARGET),
              "budget_env_steps_per_seed": mappo["timing"]["env_steps_per_seed"]}
    return {"env": "spread-v3", "runs": runs, "references": refs, "target": target}


def run_tracking(args: argparse.Namespace) -> dict[str, Any]:
    runs = [run_variant("tracking-v1", {}, name, args.tracking_steps, args)
            for name in TRACKING_VARIANTS]
    refs = reference_policies("tracking-v1", {}, args)
    chase = refs["greedy_chase"]
    comparison = {}
    for run in runs:
        ev = run["greedy_evaluation"]
        comparison[run["variant"]] = {
            f"{k}_minus_greedy_chase": ev[k]["mean"] - chase[k]["mean"]
            for k in ("return", "mean_distance", "captured", "collisions")}
    return {"env": "tracking-v1", "runs": runs, "references": refs,
            "greedy_chase_readme": TRACKING_GREEDY_README, "vs_greedy_chase": comparison}


# --------------------------------------------------------------------------------------------
# 3. throughput against JaxMARL's IPPO-FF and MAPPO-RNN, unmodified from a checkout
# --------------------------------------------------------------------------------------------
def _time_program(fn: Callable[..., Any], make_args: Callable[[int], tuple[Any, ...]],
                  repeats: int, patch_qr: bool = False) -> tuple[Any, dict[str, Any]]:
    """Compile ``fn`` (timed apart), then ``repeats`` timed runs with fresh keys; median."""
    with qr_by_gram_schmidt() if patch_qr else contextlib.nullcontext():
        compiled, timing = compile_timed(fn, *make_args(0))
        timing["calls_lapack"] = calls_lapack(compiled.as_text())
    if timing["calls_lapack"]:  # a batched LAPACK call can deadlock (see the docstring)
        raise RuntimeError("the compiled program still calls LAPACK; not run (it can hang)")
    runs, out = [], None
    for i in range(repeats):
        out, t = timed_run(compiled, *make_args(i + 1), hang_timeout_s=HANG_TIMEOUT_S)
        runs.append(t)
    timing.update(run_s=[t["run_s"] for t in runs],
                  median_run_s=statistics.median(t["run_s"] for t in runs),
                  other_cpu_busy=[t["other_cpu_busy"] for t in runs],
                  own_cores_used=[t["own_cores_used"] for t in runs])
    return out, timing


def _keys(i: int, seeds: int) -> jax.Array:
    key = jax.random.PRNGKey(1000 + i)
    return key if seeds == 1 else jax.random.split(key, seeds)


def bench_ours(name: str, seeds: int, updates: int, repeats: int,
               devices: int = 1) -> dict[str, Any]:
    """Our matched program; with ``devices > 1`` the vmapped seeds are sharded over that many
    local devices (``parallel.shard_leading``: the same program, split by XLA)."""
    env, params = make("spread-v3", num_agents=3)
    settings = JAXMARL_BASELINES[name]["ours"]
    config = ac.ActorCriticConfig(num_updates=updates, **settings)
    learner = ac.make_learner(config, env, params)
    hp = config.hyperparams(**PPO_HP)
    train = learner.train if seeds == 1 else jax.vmap(learner.train)
    hps = hp if seeds == 1 else stack_hyperparams(hp, seeds)
    mesh = parallel.seed_mesh(devices) if devices > 1 else None

    def make_args(i: int) -> tuple[Any, ...]:
        args = (_keys(i, seeds), hps)
        return args if mesh is None else parallel.shard_leading(args, mesh)

    out, timing = _time_program(train, make_args, repeats)
    state = out[0] if seeds == 1 else jax.tree.map(lambda x: x[0], out[0])
    return _throughput_row("jaxmarl_coop", name, seeds, config.total_env_steps, timing,
                           _param_count(state.params), config=config, devices=devices)


def bench_jaxmarl(module: Any, defaults: dict[str, Any], name: str, seeds: int, updates: int,
                  repeats: int) -> dict[str, Any]:
    import copy

    overrides = {"TOTAL_TIMESTEPS": updates * defaults["NUM_ENVS"] * defaults["NUM_STEPS"],
                 "NUM_SEEDS": seeds, "WANDB_MODE": "disabled"}
    config = {**copy.deepcopy(defaults), **overrides}
    with contextlib.redirect_stdout(io.StringIO()):
        train = module.make_train(config)  # sets NUM_UPDATES etc. in config
    fn = train if seeds == 1 else jax.vmap(train)
    out, timing = _time_program(fn, lambda i: (_keys(i, seeds),), repeats, patch_qr=True)
    per_seed = int(config["NUM_UPDATES"]) * config["NUM_ENVS"] * config["NUM_STEPS"]
    from flax.training.train_state import TrainState

    states = [s for s in jax.tree.leaves(out, is_leaf=lambda x: isinstance(x, TrainState))
              if isinstance(s, TrainState)]
    count = sum(_param_count(s.params) for s in states)
    if seeds > 1:
        count //= seeds
    return _throughput_row("jaxmarl", name, seeds, per_seed, timing, count,
                           overrides=overrides, num_updates=int(config["NUM_UPDATES"]))


def floor_program(settings: dict[str, Any], obs_dim: int, num_agents: int, num_actions: int,
                  updates: int) -> Callable[[jax.Array], Any]:
    """The matched networks' arithmetic alone, ``updates`` times: per update, the actor and
    the critic forward on every agent of every env for ``rollout_length`` dependent steps,
    then forward and backward through both on ``num_epochs x num_minibatches`` minibatches of
    fixed data, each followed by a plain SGD step (so that the steps depend on each other).
    No env, loss terms, optimiser state, shuffling or GAE: what any program at these settings
    must compute, timed on the same XLA kernels. Its env steps/s over JaxMARL's is the most
    that a faster env, loss or optimiser could gain at matched work (local-observation
    critics, as in IPPO)."""
    envs, steps = settings["num_envs"], settings["rollout_length"]
    epochs, minibatches = settings["num_epochs"], settings["num_minibatches"]
    actor = MLP(tuple(settings["hidden"]), num_actions, settings["activation"])
    critic = MLP(tuple(settings["hidden"]), 1, settings["activation"])
    minibatch = envs * steps * num_agents // minibatches

    def loss(p: dict[str, Any], x: jax.Array, ca: jax.Array, cc: jax.Array) -> jax.Array:
        return jnp.sum(actor.apply(p["actor"], x) * ca) + jnp.sum(critic.apply(p["critic"], x) * cc)

    def train(key: jax.Array) -> Any:
        k_a, k_c, k_obs, k_x, k_ca, k_cc = jax.random.split(key, 6)
        obs = jax.random.normal(k_obs, (steps, envs * num_agents, obs_dim))
        params = {"actor": actor.init(k_a, obs[0]), "critic": critic.init(k_c, obs[0])}
        n = epochs * minibatches
        data = (jax.random.normal(k_x, (n, minibatch, obs_dim)),
                jax.random.normal(k_ca, (n, minibatch, num_actions)) / minibatch,
                jax.random.normal(k_cc, (n, minibatch, 1)) / minibatch)

        def update(params: dict[str, Any], _: None) -> tuple[dict[str, Any], None]:
            def act(c: jax.Array, x: jax.Array) -> tuple[jax.Array, None]:
                # every output summed, so that XLA cannot narrow the dots to a slice of them
                out = (jnp.sum(actor.apply(params["actor"], x + c))
                       + jnp.sum(critic.apply(params["critic"], x + c)))
                return c + 1e-9 * out, None

            c, _ = jax.lax.scan(act, jnp.zeros(()), obs)

            def sgd(params: dict[str, Any], batch: tuple[jax.Array, ...]
                    ) -> tuple[dict[str, Any], None]:
                grads = jax.grad(loss)(params, batch[0] + c, *batch[1:])
                return jax.tree.map(lambda w, g: w - 1e-3 * g, params, grads), None

            return jax.lax.scan(sgd, params, data)[0], None

        return jax.lax.scan(update, params, None, length=updates)[0]

    return train


def bench_floor(name: str, updates: int, repeats: int) -> dict[str, Any]:
    """``floor_program`` at JaxMARL's matched settings for ``name`` (its obs width, 18 on
    spread: no agent id)."""
    env, _ = make("spread-v3", num_agents=3)
    settings = JAXMARL_BASELINES[name]["ours"]
    train = floor_program(settings, env.obs_dim, env.num_agents,
                          env.num_actions, updates)
    out, timing = _time_program(train, lambda i: (jax.random.PRNGKey(2000 + i),), repeats)
    steps = updates * settings["num_envs"] * settings["rollout_length"]
    return _throughput_row("floor", name, 1, steps, timing, _param_count(out), updates=updates)


def _throughput_row(impl: str, name: str, seeds: int, steps_per_seed: int,
                    timing: dict[str, Any], params: int, **extra: Any) -> dict[str, Any]:
    rate = seeds * steps_per_seed / timing["median_run_s"]
    row = {"impl": impl, "algorithm": name, "seeds": seeds, "env_steps_per_seed": steps_per_seed,
           "params_per_seed": params, "env_steps_per_s": rate,
           "env_steps_per_s_per_seed": rate / seeds, "devices": 1, **timing, **extra}
    where = f" on {row['devices']} devices" if row["devices"] > 1 else ""
    log(f"  {impl:<13} {name:<6} {seeds} seed(s){where}: {rate:>10,.0f} env steps/s "
         f"(compile {timing['trace_and_compile_s']:.1f} s, runs "
         + ", ".join(f"{t:.2f}" for t in timing["run_s"]) + " s)")
    return row


def matched_config(name: str, defaults: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Item-by-item settings of our learner and JaxMARL's script for the throughput rows."""
    ours = JAXMARL_BASELINES[name]["ours"]
    d = defaults or {}
    rows = [{"item": key, "ours": ours[key], "jaxmarl": d.get(their)}
            for key, their in MATCHED_KEYS.items()]
    mb = ours["num_envs"] * ours["rollout_length"] * 3 // ours["num_minibatches"]
    rows.append({"item": "minibatch (agent samples)", "ours": mb,
                 "jaxmarl": (d["NUM_ENVS"] * 3 * d["NUM_STEPS"] // d["NUM_MINIBATCHES"])
                 if d else None})
    if name.startswith("IPPO"):
        rows += [
            {"item": "actor", "ours": "MLP 64-64 tanh (+ agent id)",
             "jaxmarl": "MLP 64-64 " + str(d.get("ACTIVATION", "tanh"))},
            {"item": "critic", "ours": "MLP 64-64 tanh on own obs (+ agent id)",
             "jaxmarl": "MLP 64-64 on own obs (same module as the actor, separate towers)"},
            {"item": "parameters", "ours": "shared by the 3 agents", "jaxmarl": "shared"}]
    else:
        rows += [
            {"item": "actor", "ours": "Dense 128 relu, GRU 128, Dense 128 relu (+ agent id)",
             "jaxmarl": f"Dense {d.get('FC_DIM_SIZE', 128)} relu, GRU "
                        f"{d.get('GRU_HIDDEN_DIM', 128)}, Dense {d.get('GRU_HIDDEN_DIM', 128)} "
                        "relu"},
            {"item": "critic", "ours": "as the actor, on the global state (54) + agent id",
             "jaxmarl": "same as its actor, on its world state (all obs, 54)"},
            {"item": "recurrence", "ours": "GRU re-run over each minibatch's sequences "
                                           "(whole envs, from the stored hidden states)",
             "jaxmarl": "GRU re-run over each minibatch's sequences"}]
    rows += [
        {"item": "optimiser", "ours": "adam eps 1e-5, clip 0.5, linear lr decay",
         "jaxmarl": "adam eps 1e-5, clip 0.5, linear lr decay"},
        {"item": "per-update host callback", "ours": "none",
         "jaxmarl": "io_callback -> wandb.log (disabled run)"},
        {"item": "spread episode", "ours": "25 steps", "jaxmarl": "26 steps"}]
    return rows


def run_throughput(args: argparse.Namespace,
                   on_row: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Ours and JaxMARL's IPPO and MAPPO, 1 seed and ``args.seeds`` seeds, back to back.
    ``on_row(result so far)`` runs after every row (the caller saves it: a run stopped by a
    time limit keeps what it measured)."""
    seed_counts = [1] if args.quick else sorted({1, args.seeds})  # quick: fewer compiles
    result: dict[str, Any] = {"rows": [], "jaxmarl": None, "matched_config": {}}

    def add(row: dict[str, Any]) -> None:
        result["rows"].append(row)
        if on_row is not None:
            on_row(result)
    modules: dict[str, tuple[Any, dict[str, Any]]] = {}

    def load_baselines() -> dict[str, Any]:
        """Load JaxMARL's scripts and configs into ``modules``, checking the matched items."""
        repo = Path(args.jaxmarl_repo).resolve()
        for name, spec in JAXMARL_BASELINES.items():
            defaults = {**load_yaml(repo, spec["config"]), **spec.get("overrides", {})}
            if defaults["ENV_NAME"] != JAXMARL_SPREAD:
                raise ValueError(f"{spec['config']}: ENV_NAME is {defaults['ENV_NAME']}")
            for key, their in MATCHED_KEYS.items():
                if spec["ours"][key] != defaults[their]:
                    raise ValueError(f"{spec['config']}: {their} = {defaults[their]} but "
                                     f"our matched {key} is {spec['ours'][key]}")
            modules[name] = (load_script(repo, spec["script"]), defaults)
        import wandb

        with contextlib.redirect_stdout(io.StringIO()):
            wandb.init(mode="disabled")  # as its main(); its callbacks call wandb.log
        return {
            "status": "ok", "repo": str(repo), "commit": git_commit(repo),
            "jaxmarl_version": jaxmarl_version(), "env": JAXMARL_SPREAD,
            "scripts": {n: s["script"] for n, s in JAXMARL_BASELINES.items()},
            "default_configs": {n: m[1] for n, m in modules.items()},
            "trace_patch": "jnp.linalg.qr of tall matrices by Gram-Schmidt while its "
                           "programs are traced (orthogonal init without LAPACK, which "
                           "deadlocks vmapped on 2 cores); files unmodified"}

    result["jaxmarl"] = run_peer(args, "baselines", load_baselines)
    if result["jaxmarl"]["status"] != "ok":
        modules.clear()
    for name in JAXMARL_BASELINES:
        result["matched_config"][name] = matched_config(name, modules.get(name, (None, None))[1])
        if args.quick and name == "IPPO-1x1" and "IPPO-1x1" not in modules:
            continue  # quick without JaxMARL: the IPPO rows' code, on other settings
        for seeds in seed_counts if name != "IPPO-1x1" else [1]:
            updates = args.throughput_updates[name]
            if seeds > 1:
                updates = max(1, updates // 4)
            log(f"throughput {name}, {seeds} seed(s), {updates} updates per run ...")
            add(bench_ours(name, seeds, updates, args.throughput_repeats))
            if seeds == 1 and name.startswith("IPPO"):
                log("  ... and the floor: the matched networks' arithmetic alone")
                add(bench_floor(name, updates, args.throughput_repeats))
            devices = jax.local_device_count()
            if devices > 1 and seeds > 1 and seeds % devices == 0:
                log(f"  ... and its seeds sharded over {devices} devices")
                add(bench_ours(name, seeds, updates, args.throughput_repeats, devices=devices))
            if name in modules:
                module, defaults = modules[name]
                try:
                    add(bench_jaxmarl(module, defaults, name, seeds, updates,
                                      args.throughput_repeats))
                except Exception as exc:  # a peer failure is reported; ours are kept
                    result["jaxmarl"].setdefault("errors", []).append(
                        f"{name}/{seeds}: {type(exc).__name__}: {exc}")
                    log(f"JaxMARL {name} failed: {exc}")
    peer = {(r["algorithm"], r["seeds"]): r for r in result["rows"] if r["impl"] == "jaxmarl"}
    for r in result["rows"]:
        p = peer.get((r["algorithm"], r["seeds"]))
        ok = p is not None and r["impl"] in ("jaxmarl_coop", "floor")
        r["ratio_vs_jaxmarl"] = r["env_steps_per_s"] / p["env_steps_per_s"] if ok else None
        r["compile_ratio_vs_jaxmarl"] = (r["trace_and_compile_s"] / p["trace_and_compile_s"]
                                         if ok else None)
    return result


# --------------------------------------------------------------------------------------------
# tables and plots
# --------------------------------------------------------------------------------------------
def spread_table(spread: dict[str, Any]) -> str:
    header = (f"{'variant':<8} {'steps/seed':>10} {'greedy team return':>19} "
              f"{'train last 5%':>14} {'collisions/step':>15} {'occupied lm':>11} "
              f"{'compile s':>9} {'run s':>6} {'env steps/s':>11}")
    lines = []
    for r in spread["runs"]:
        ev, t = r["greedy_evaluation"], r["timing"]
        lines.append(f"{r['variant']:<8} {t['env_steps_per_seed']:>10,} "
                     f"{_pm(ev['return']):>19} {_pm(r['training_last_5pct']['return']):>14} "
                     f"{_pm(ev['collisions'], '.3f'):>15} "
                     f"{fmt(ev['occupied_landmarks']['mean'], '.2f'):>11} "
                     f"{t['trace_and_compile_s']:>9.1f} {t['run_s']:>6.0f} "
                     f"{t['env_steps_per_s']:>11,.0f}")
    for name, ev in spread["references"].items():
        lines.append(f"{name:<8} {'-':>10} {_pm(ev['return']):>19} {'-':>14} "
                     f"{_pm(ev['collisions'], '.3f'):>15} "
                     f"{fmt(ev['occupied_landmarks']['mean'], '.2f'):>11}")
    return table(header, lines)


def tracking_table(tracking: dict[str, Any]) -> str:
    header = (f"{'policy':<13} {'team return':>13} {'mean distance':>15} {'captured':>15} "
              f"{'collisions/step':>16} {'train last 5%':>14}")
    lines = []
    rows = [(r["variant"], r["greedy_evaluation"], r["training_last_5pct"]["return"])
            for r in tracking["runs"]]
    rows += [(name, ev, None) for name, ev in tracking["references"].items()]
    for name, ev, tail in rows:
        lines.append(f"{name:<13} {_pm(ev['return']):>13} {_pm(ev['mean_distance'], '.3f'):>15} "
                     f"{_pm(ev['captured'], '.3f'):>15} {_pm(ev['collisions'], '.3f'):>16} "
                     f"{_pm(tail):>14}")
    return table(header, lines)


def throughput_table(rows: list[dict[str, Any]]) -> str:
    header = (f"{'algorithm':<9} {'seeds':>5} {'devices':>7} {'impl':<13} {'params':>7} "
              f"{'compile s':>9} {'env steps/s':>12} {'per seed':>10} {'ours/JaxMARL':>12}")
    lines = []
    for r in rows:
        lines.append(f"{r['algorithm']:<9} {r['seeds']:>5} {r.get('devices', 1):>7} "
                     f"{r['impl']:<13} "
                     f"{r['params_per_seed']:>7,} {r['trace_and_compile_s']:>9.1f} "
                     f"{r['env_steps_per_s']:>12,.0f} {r['env_steps_per_s_per_seed']:>10,.0f} "
                     f"{fmt(r['ratio_vs_jaxmarl'], '.2f'):>12}")
    return table(header, lines)


def plot_curves(section: dict[str, Any], out: Path, extra_metric: str | None = None) -> str:
    """Mean ± 95% band over seeds of the per-update team return (and one more metric)."""
    return plot_section_curves(
        section, out / f"learning_curves_{section['env']}.png",
        f"{section['env']}: actor-critic training, mean ± 95% CI over seeds", extra_metric)


# --------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = benchmark_parser(__doc__)
    p.add_argument("--quick", action="store_true", help="tiny budgets, for a smoke test")
    p.add_argument("--seeds", type=int, default=None, help="seeds per variant (default 8, "
                   "quick 2); also the vmapped seed count of the throughput rows")
    p.add_argument("--steps", type=int, default=None,
                   help="env steps per seed, PPO on spread (default 3,000,000; quick 4096)")
    p.add_argument("--a2c-steps", type=int, default=None,
                   help="env steps per seed, A2C on spread (default --steps)")
    p.add_argument("--tracking-steps", type=int, default=None,
                   help="env steps per seed on tracking (default 2,000,000; quick 4096)")
    p.add_argument("--eval-episodes", type=int, default=None,
                   help="greedy evaluation episodes per seed (default 1024, quick 16)")
    p.add_argument("--throughput-repeats", type=int, default=None,
                   help="timed runs per throughput row, median (default 3, quick 1)")
    p.add_argument("--skip-jaxmarl", action="store_true", help="do not run JaxMARL's baselines")
    p.add_argument("--jaxmarl-repo", default=os.environ.get("JAXMARL_REPO"),
                   help="JaxMARL checkout with baselines/ (default $JAXMARL_REPO)")
    p.add_argument("--only", nargs="+", choices=SECTIONS, default=None,
                   help="run only these parts (default all)")
    p.add_argument("--cpu-devices", type=int, default=None,
                   help="expose this many CPU devices (XLA_FLAGS) so that the throughput part "
                   "adds rows of our vmapped seeds sharded over them (one core each)")
    p.add_argument("--seed", type=int, default=0, help="base PRNG seed")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    args = p.parse_args(argv)
    quick = args.quick
    defaults = {"seeds": 2 if quick else 8, "steps": 4096 if quick else 3_000_000,
                "tracking_steps": 4096 if quick else 2_000_000,
                "eval_episodes": 16 if quick else 1024, "throughput_repeats": 1 if quick else 3}
    fill_defaults(args, defaults)
    if args.a2c_steps is None:
        args.a2c_steps = args.steps
    check_at_least_one(p, args, "seeds", "steps", "a2c_steps", "tracking_steps",
                       "eval_episodes", "throughput_repeats")
    if args.cpu_devices is not None:
        try:
            set_cpu_device_count(args.cpu_devices)  # before the backend starts
        except ValueError as exc:
            p.error(f"--cpu-devices: {exc}")
        if jax.default_backend() != "cpu" or jax.local_device_count() != args.cpu_devices:
            p.error(f"--cpu-devices {args.cpu_devices}: the backend is "
                    f"{jax.default_backend()} with {jax.local_device_count()} device(s)")
    # updates per timed single-seed run (a quarter of that with vmapped seeds): a few seconds
    args.throughput_updates = ({"IPPO": 1, "IPPO-1x1": 1, "MAPPO": 1} if quick
                               else {"IPPO": 64, "IPPO-1x1": 64, "MAPPO": 16})
    args.only = list(args.only or SECTIONS)
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    out, start, data = start_run(
        "learn_actor_critic", argv, args,
        TRAINING_METHOD + "; final policies are evaluated greedily (mode of the policy), "
        "eval_episodes whole episodes per seed; mean ± 95% Student-t CI over seeds; "
        "throughput rows: compiled apart, median of throughput_repeats timed runs")
    data["variants"] = {n: {"algorithm": a, "critic": c, "config": cfg, "hyperparams": hp}
                        for n, (a, c, cfg, hp) in VARIANTS.items()}
    data["ppo_hyperparams_by_env"] = PPO_HP_BY_ENV  # each run also records its own
    data["plots"] = []
    results = out / "results.json"

    def save() -> dict[str, Any]:
        """Write after every part (a later hang loses nothing). With ``--only``, the other
        parts are kept from the file as it is now, so that runs of different parts in the
        same folder (one after another, or side by side) add up to one results.json."""
        merged = dict(data)
        if len(args.only) < len(SECTIONS) and results.is_file():
            with contextlib.suppress(OSError, ValueError):
                earlier = json.loads(results.read_text())
                kept = {}
                for section in SECTIONS:
                    if section not in args.only and section in earlier:
                        merged[section] = earlier[section]
                        kept[section] = (earlier.get("sections_from_other_runs", {}).get(section)
                                         or {"created": earlier.get("created"),
                                             "command": earlier.get("command"),
                                             "machine": earlier.get("machine")})
                merged["sections_from_other_runs"] = kept
                merged["plots"] = sorted(set(data["plots"]) | {
                    path for path in earlier.get("plots", [])
                    if not any(section in Path(path).name for section in args.only)})
        save_results(results, merged, start)
        return merged

    if "throughput" in args.only:  # first: short, and most sensitive to load drift
        def partial(result: dict[str, Any]) -> None:
            data["throughput"] = {**result, "complete": False}
            save()

        data["throughput"] = {**run_throughput(args, partial), "complete": True}
        save()
        log(throughput_table(data["throughput"]["rows"]))
    if "spread" in args.only:
        data["spread"] = run_spread(args)
        data["plots"].append(plot_curves(data["spread"], out))
        save()
        log(spread_table(data["spread"]))
    if "tracking" in args.only:
        data["tracking"] = run_tracking(args)
        data["plots"].append(plot_curves(data["tracking"], out, "episode_collisions"))
        save()
        log(tracking_table(data["tracking"]))
    data["machine"]["other_cpu_busy_end"] = other_cpu_busy()
    data = save()  # what is printed below: this run's parts and any kept from other runs

    if "spread" in data:
        s = data["spread"]
        print(f"spread-v3, 3 agents: final greedy policy ({args.seeds} seeds x "
              f"{args.eval_episodes} episodes; team return = sum over agents; mean ± 95% CI):")
        print(spread_table(s))
        t = s["target"]
        print(f"target {t['level']}: MAPPO greedy {_pm(t['mappo_greedy_return'])} -> "
              f"{'reached' if t['reached_by_greedy_mean'] else 'NOT reached'} "
              f"({t['seeds_reaching']}/{args.seeds} seeds); training curve first at "
              f"{fmt(t['training_curve_first_reaches_at_env_steps'], ',.0f')} env steps")
    if "tracking" in data:
        print(f"\ntracking-v1, 2 agents ({args.seeds} seeds x {args.eval_episodes} episodes, "
              "greedy; per-step episode means):")
        print(tracking_table(data["tracking"]))
    if "spread" in data or "tracking" in data:
        print("\nsettings:")
        for name, (a, c, cfg, hp) in VARIANTS.items():
            print(f"  {name:<6} {a}/{c}: " + ", ".join(f"{k}={v}" for k, v in cfg.items())
                  + "; " + ", ".join(f"{k}={v}" for k, v in hp.items()))
    if "throughput" in data:
        th = data["throughput"]
        print(f"\nthroughput on spread (3 agents), training end to end, median of "
              f"{args.throughput_repeats} runs, compile apart:")
        print(throughput_table(th["rows"]))
        for r in th["rows"]:
            if r["impl"] == "floor" and r["ratio_vs_jaxmarl"] is not None:
                print(f"ceiling at matched work, {r['algorithm']}: the networks' arithmetic "
                      f"alone (floor) runs {r['ratio_vs_jaxmarl']:.2f}x JaxMARL's env steps/s")
        jm = th["jaxmarl"] or {}
        if jm.get("status") != "ok":
            print(f"JaxMARL: {jm.get('status')} ({jm.get('reason') or jm.get('error')})")
        for name, rows in th["matched_config"].items():
            print(f"matched config, {name}:")
            for m in rows:
                print(f"  {m['item']:<27} ours: {m['ours']!s:<44} JaxMARL: {m['jaxmarl']}")
    print("\n" + machine_summary(data["machine"], data["total_wall_s"]))
    for section, earlier in data.get("sections_from_other_runs", {}).items():
        print(f"({section}: in results.json from the run of {earlier['created']})")
    print(f"wrote {results} and {len(data['plots'])} PNG(s)")
    return data


if __name__ == "__main__":
    main()
