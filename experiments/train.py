"""Train a team: any learner on any env, several seeds in one program, results on disk.

    python -m experiments.train                              # MAPPO on tracking-v1, 4 seeds
    python -m experiments.train --preset spread-mappo --seeds 8
    python -m experiments.train --learner dqn --env spread-v3 --env-steps 2000000
    python -m experiments.train --learner tabular_q --env penalty-v1 --env-param k=-25
    python -m experiments.train --resume runs/mappo-tracking-v1-20261126-101500

The options are the fields of :class:`RunConfig` (the command line is generated from it);
``--preset NAME`` starts from a named config in :data:`PRESETS`, and explicit options
override it. ``--config`` sets learner config fields (static: shapes and counts), ``--hp``
hyperparameters (traced), ``--env-param`` env options and params, each as NAME=VALUE.

A run is a Python loop over jitted chunks of ``update`` (the same function ``train``
scans), vmapped over seeds. Between chunks: a progress bar (updates, env steps, steps/s,
mean return over seeds), the per-update metrics rewritten atomically to ``metrics.csv``,
every ``--eval-every`` chunks a greedy evaluation (kept for the marl-eval JSON; the best
parameters of each seed are kept), and every ``--checkpoint-every`` chunks an orbax
checkpoint of the whole state. ``--resume RUN_DIR`` continues from the newest checkpoint
and ends exactly where the uninterrupted run would. The run folder:

    config.json      everything needed to rerun (the RunConfig, learner config, hyperparams)
    metrics.csv      one row per seed and update
    marl_eval.json   periodic and absolute evaluations in the marl-eval format
    eval.json        final greedy evaluation, the best parameters re-evaluated ("absolute"),
                     the env's reference policies; mean ± 95% CI over seeds
    timing.json      seconds by part (compile apart, training, evaluation, checkpoints) and
                     training env steps/s, one entry per invocation that reached the end
    curve.png        training return against env steps, mean and 95% band over seeds
    rollout.gif      seed 0's trained team acting (particle tasks and the grid)
    checkpoints/     orbax checkpoints (the newest two)

Several processes (hosts), one program: start the same command in every process with
``--distributed``. It calls ``jax.distributed.initialize`` before any other JAX use, with
``--coordinator-address HOST:PORT --num-processes N --process-id I`` where given, otherwise
with what JAX detects (Slurm, Open MPI, TPU pods, ...). The seeds are split over one global
mesh: ``--devices`` local devices of every process (--seeds must divide by devices x
processes), and each process puts only its own seeds' inputs on its devices. Results are
gathered to every process (``process_allgather``) and only process 0 writes the run folder
and prints; the other processes write nothing (they join orbax's collective save of each
checkpoint, whose arrays, gathered to host memory, orbax writes from process 0 only).
``--resume`` reads the run folder in every process: keep it on a filesystem they share.

    python -m experiments.train --preset spread-mappo --distributed      # under srun, etc.
    python -m experiments.train --distributed --coordinator-address 10.0.0.1:1234 \
        --num-processes 2 --process-id 0                              # and 1 on host two
"""

from __future__ import annotations

from jaxmarl_coop.runtime import configure_xla

configure_xla()

import argparse  # noqa: E402
import contextlib  # noqa: E402
import dataclasses  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import typing  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from jaxmarl_coop import checkpoints, parallel  # noqa: E402
from jaxmarl_coop.envs import (  # noqa: E402
    make,
    random_policy,
    reference_policies,
    registered,
)
from jaxmarl_coop.learners import (  # noqa: E402
    actor_critic,
    dqn,
    tabular_q,
    value_decomposition,
)
from jaxmarl_coop.learners.base import stack_hyperparams  # noqa: E402
from jaxmarl_coop.learners.evaluation import evaluate  # noqa: E402
from jaxmarl_coop.runs import (  # noqa: E402
    _jsonable,
    mean_ci95,
    write_json_atomic,
    write_text_atomic,
)

DQN_PRESET = {"num_envs": 16, "rollout_length": 4, "buffer_size": 50_000, "batch_size": 128,
              "learning_starts": 5_000, "target_update_interval": 50}
DQN_HP_PRESET = {"lr": 1e-3, "gamma": 0.95, "epsilon_decay_fraction": 0.3}
#: learner name -> (module, config preset, hyperparameter preset); --config / --hp override.
#: Hysteretic learning is a hyperparameter of tabular_q, dqn, vdn and qmix:
#: ``--hp hysteretic_beta=0.1``.
LEARNERS: dict[str, tuple[Any, dict[str, Any], dict[str, Any]]] = {
    "mappo": (actor_critic, {"algorithm": "ppo", "critic": "centralised"}, {"lr": 2e-3}),
    "ippo": (actor_critic, {"algorithm": "ppo", "critic": "local"}, {"lr": 2e-3}),
    "maa2c": (actor_critic, {"algorithm": "a2c", "critic": "centralised", "rollout_length": 16},
              {"lr": 1e-3}),
    "ia2c": (actor_critic, {"algorithm": "a2c", "critic": "local", "rollout_length": 16},
             {"lr": 1e-3}),
    "dqn": (dqn, DQN_PRESET, DQN_HP_PRESET),
    "vdn": (value_decomposition, {**DQN_PRESET, "mixer": "vdn"}, DQN_HP_PRESET),
    "qmix": (value_decomposition, {**DQN_PRESET, "mixer": "qmix"}, DQN_HP_PRESET),
    "tabular_q": (tabular_q, {}, {}),
}
CONFIG_CLASSES = {actor_critic: actor_critic.ActorCriticConfig, dqn: dqn.DQNConfig,
                  value_decomposition: value_decomposition.VDConfig,
                  tabular_q: tabular_q.TabularQConfig}
#: eval_key index of the final evaluation (periodic ones use the chunk number)
FINAL_EVAL = 1_000_000


def _parse_value(value: str) -> Any:
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(value.lower(), value)


def _parse_pairs(pairs: tuple[str, ...] | list[str], what: str) -> dict[str, Any]:
    out = {}
    for pair in pairs:
        if not isinstance(pair, str) or "=" not in pair:
            raise ValueError(f"{what} must look like NAME=VALUE, got {pair!r}")
        name, value = pair.split("=", 1)
        out[name.strip()] = _parse_value(value.strip())
    return out


def _field(default: Any, help: str) -> Any:
    return dataclasses.field(default=default, metadata={"help": help})


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """One run: what to train, on what, for how long, and what to record."""

    learner: str = _field("mappo", f"learner: {', '.join(LEARNERS)}")
    env: str = _field("tracking-v1", "a registered env id (jaxmarl_coop.envs.registered())")
    env_param: tuple[str, ...] = _field((), "env option or param NAME=VALUE (repeatable), "
                                            "e.g. num_agents=3 or k=-25")
    hp: tuple[str, ...] = _field((), "hyperparameter NAME=VALUE (repeatable), e.g. lr=0.001")
    config: tuple[str, ...] = _field((), "learner config field NAME=VALUE (repeatable), "
                                         "e.g. num_envs=32 or hidden=128,128")
    seeds: int = _field(4, "seeds, trained side by side in one vmapped program")
    env_steps: int = _field(1_000_000, "env steps per seed (rounded up to whole chunks)")
    chunks: int = _field(20, "jitted chunks: progress, metrics and checkpoints between them")
    eval_every: int = _field(5, "greedy evaluation every this many chunks (0: only at the end)")
    periodic_eval_episodes: int = _field(32, "episodes per seed of each periodic evaluation")
    eval_episodes: int = _field(256, "episodes per seed of the final evaluations")
    checkpoint_every: int = _field(1, "orbax checkpoint every this many chunks (0: never)")
    seed: int = _field(0, "base PRNG seed; seed i trains with key split(PRNGKey(seed))[i]")
    devices: int = _field(1, "local devices to shard the seeds over (a divisor of --seeds)")
    out: str = _field("", "run folder (default runs/LEARNER-ENV-TIMESTAMP)")
    gif: bool = _field(True, "write rollout.gif (particle tasks and the grid)")

    def __post_init__(self) -> None:
        if self.learner not in LEARNERS:
            raise ValueError(f"unknown learner {self.learner!r}; choose from "
                             f"{', '.join(LEARNERS)}")
        if self.env not in registered():
            raise ValueError(f"unknown env {self.env!r}; choose from {', '.join(registered())}")
        for name, low in (("seeds", 1), ("env_steps", 1), ("chunks", 1), ("eval_every", 0),
                          ("periodic_eval_episodes", 1), ("eval_episodes", 1),
                          ("checkpoint_every", 0), ("devices", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"--{name.replace('_', '-')} must be an integer >= {low}, "
                                 f"got {value!r}")
        if self.seeds % self.devices:
            raise ValueError(f"--seeds {self.seeds} must be a multiple of --devices "
                             f"{self.devices} (seeds are split evenly over devices)")
        for name in ("env_param", "hp", "config"):
            _parse_pairs(getattr(self, name), f"--{name.replace('_', '-')}")


#: small Q-learners for the stateless matrix games (gamma 0: every round is one game)
MATRIX_Q_CONFIG = ("num_envs=4", "rollout_length=1", "buffer_size=400", "batch_size=32",
                   "learning_starts=64", "target_update_interval=10", "hidden=16")
MATRIX_Q_HP = ("lr=0.003", "gamma=0", "epsilon_decay_fraction=0.5")
#: named configs for the tasks we ship; ``--preset NAME``, then explicit options override
PRESETS: dict[str, RunConfig] = {
    "tracking-mappo": RunConfig(),
    "tracking-ippo": RunConfig(learner="ippo"),
    "tracking-dqn": RunConfig(learner="dqn", env_steps=2_000_000),
    "spread-mappo": RunConfig(env="spread-v3", env_steps=3_000_000, seeds=8,
                              hp=("lr=0.001", "ent_coef=0.06"),
                              config=("num_envs=16", "rollout_length=128", "hidden=64,64",
                                      "activation=tanh")),
    "spread-dqn": RunConfig(learner="dqn", env="spread-v3", env_steps=2_000_000, seeds=8),
    "tag-mappo": RunConfig(env="tag-v3", env_param=("prey_policy=scripted",),
                           env_steps=2_000_000),
    "penalty-tabular": RunConfig(learner="tabular_q", env="penalty-v1", env_param=("k=-25",),
                                 seeds=16, env_steps=200_000, gif=False),
    "climbing-tabular": RunConfig(learner="tabular_q", env="climbing-v1", seeds=16,
                                  env_steps=200_000, gif=False),
    "climbing-hysteretic": RunConfig(learner="tabular_q", env="climbing-v1", seeds=16,
                                     env_steps=200_000, hp=("hysteretic_beta=0.1",), gif=False),
    "penalty-vdn": RunConfig(learner="vdn", env="penalty-v1", env_param=("k=-25",), seeds=16,
                             env_steps=4_800, chunks=4, config=MATRIX_Q_CONFIG,
                             hp=MATRIX_Q_HP, gif=False),
    "penalty-hysteretic-vdn": RunConfig(learner="vdn", env="penalty-v1", env_param=("k=-25",),
                                        seeds=16, env_steps=4_800, chunks=4,
                                        config=MATRIX_Q_CONFIG,
                                        hp=(*MATRIX_Q_HP, "hysteretic_beta=0.1"), gif=False),
    "spread-vdn": RunConfig(learner="vdn", env="spread-v3", env_steps=2_000_000, seeds=8),
    "spread-qmix": RunConfig(learner="qmix", env="spread-v3", env_steps=2_000_000, seeds=8),
    "load-balancing-mappo": RunConfig(env="load-balancing-v1", env_steps=1_000_000,
                                      config=("rollout_length=100",)),
    "load-balancing-qmix": RunConfig(learner="qmix", env="load-balancing-v1",
                                     env_steps=1_000_000),
    "intersection-mappo": RunConfig(env="intersection-v1", env_steps=1_000_000,
                                    config=("rollout_length=100",)),
    "intersection-qmix": RunConfig(learner="qmix", env="intersection-v1",
                                   env_steps=1_000_000),
    "grid-tracking-tabular": RunConfig(learner="tabular_q", env="grid-tracking-v1",
                                       env_steps=1_000_000),
}


class UsageError(Exception):
    """A user error: reported as one line, no traceback."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> typing.NoReturn:  # one line, no usage block
        self.exit(2, f"error: {message} (see --help)\n")


#: options that start several processes; not RunConfig fields (a resumed run may run elsewhere)
DISTRIBUTED_OPTIONS = ("distributed", "coordinator_address", "num_processes", "process_id")


def add_distributed_options(parser: argparse.ArgumentParser, suppress: bool = False) -> None:
    """``--distributed`` and the arguments of ``jax.distributed.initialize`` (train, sweep)."""
    default = argparse.SUPPRESS if suppress else None
    group = parser.add_argument_group(
        "several processes", "one program over the devices of several processes (hosts); "
        "process 0 writes the results, the others nothing")
    group.add_argument("--distributed", action="store_true",
                       default=argparse.SUPPRESS if suppress else False,
                       help="join the processes with jax.distributed.initialize before any "
                            "other JAX use; options not given are detected by JAX (Slurm, "
                            "Open MPI, TPU pods, ...)")
    group.add_argument("--coordinator-address", metavar="HOST:PORT", default=default,
                       help="address of process 0's coordinator (with --distributed)")
    group.add_argument("--num-processes", type=int, metavar="N", default=default,
                       help="number of processes (with --distributed)")
    group.add_argument("--process-id", type=int, metavar="I", default=default,
                       help="this process's index, 0 .. N-1 (with --distributed)")


def start_distributed(options: dict[str, Any]) -> bool:
    """Join the processes if ``options["distributed"]`` (``UsageError`` if that fails or the
    other options come without it); returns whether distributed. Call before any JAX use."""
    given = {k: options.get(k) for k in DISTRIBUTED_OPTIONS[1:]
             if options.get(k) is not None}
    if not options.get("distributed"):
        if given:
            flags = ", ".join("--" + k.replace("_", "-") for k in given)
            raise UsageError(f"{flags}: only with --distributed")
        return False
    count, index = given.get("num_processes"), given.get("process_id")
    if count is not None and count < 1:
        raise UsageError(f"--num-processes must be an integer >= 1, got {count}")
    if index is not None and (index < 0 or (count is not None and index >= count)):
        raise UsageError(f"--process-id must be in 0 .. --num-processes - 1, got {index}")
    try:
        parallel.initialize_distributed(**given)
    except (ValueError, TypeError, RuntimeError) as err:
        raise UsageError(f"--distributed: jax.distributed.initialize failed: "
                         f"{str(err).splitlines()[0]}") from err
    return True


def build_parser() -> argparse.ArgumentParser:
    """The command line, generated from the fields of :class:`RunConfig`."""
    parser = _Parser(prog="python -m experiments.train", description=__doc__.split("\n\n")[0],
                     argument_default=argparse.SUPPRESS)
    parser.add_argument("--preset", choices=sorted(PRESETS), metavar="NAME",
                        help=f"start from a named config: {', '.join(PRESETS)}")
    parser.add_argument("--resume", metavar="RUN_DIR",
                        help="continue the run in RUN_DIR from its newest checkpoint")
    parser.add_argument("--stop-after-chunks", type=int, help=argparse.SUPPRESS)
    add_distributed_options(parser, suppress=True)
    hints = typing.get_type_hints(RunConfig)
    for f in dataclasses.fields(RunConfig):
        flag = "--" + f.name.replace("_", "-")
        kind = hints[f.name]
        helptext = f"{f.metadata['help']} (default {f.default!r})"
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, help=helptext)
        elif typing.get_origin(kind) is tuple:
            parser.add_argument(flag, action="append", metavar="NAME=VALUE", help=helptext)
        else:
            parser.add_argument(flag, type=kind, help=helptext)
    return parser


def parse_args(argv: list[str] | None = None) -> tuple[RunConfig, dict[str, Any]]:
    """``(RunConfig, extras)`` from the command line; ``extras`` holds the resume, stop and
    :data:`DISTRIBUTED_OPTIONS` given.

    Raises ``ValueError`` for a bad value (the message names it and what was expected).
    """
    given = vars(build_parser().parse_args(argv))
    extras = {k: given.pop(k) for k in ("resume", "stop_after_chunks", *DISTRIBUTED_OPTIONS)
              if k in given}
    base = PRESETS[given.pop("preset")] if "preset" in given else RunConfig()
    for name in ("env_param", "hp", "config"):  # presets' pairs first, the user's win
        if name in given:
            given[name] = (*getattr(base, name), *given[name])
    return dataclasses.replace(base, **given), extras


def build(run: RunConfig):
    """Env, learner config, hyperparameters and learner of ``run`` (``UsageError`` if bad).

    Returns ``(module, env, env_params, config, hp, learner, chunks)``.
    """
    module, overrides, hp_preset = LEARNERS[run.learner]
    try:
        env, env_params = make(run.env, **_parse_pairs(run.env_param, "--env-param"))
        config_class = CONFIG_CLASSES[module]
        fields = {f.name for f in dataclasses.fields(config_class)}
        user_config = _parse_pairs(run.config, "--config")
        unknown = sorted(set(user_config) - fields - {"num_updates"})
        if unknown or "num_updates" in user_config:
            bad = unknown or ["num_updates (set --env-steps instead)"]
            raise UsageError(f"{run.learner} has no settable config field {', '.join(bad)}; "
                             f"valid: {', '.join(sorted(fields - {'num_updates'}))}")
        config_kw = {**overrides, **user_config}
        if "hidden" in config_kw:
            config_kw["hidden"] = tuple(int(h) for h in str(config_kw["hidden"]).split(","))
        probe = config_class(**{**config_kw, "num_updates": 1})
        steps_per_update = probe.num_envs * probe.rollout_length
        num_updates = -(-run.env_steps // steps_per_update)
        chunks = min(run.chunks, num_updates)
        num_updates = -(-num_updates // chunks) * chunks
        config = config_class(**{**config_kw, "num_updates": num_updates})
        hp_fields = {f.name for f in dataclasses.fields(type(config.hyperparams()))}
        user_hp = _parse_pairs(run.hp, "--hp")
        unknown = sorted(set(user_hp) - hp_fields)
        if unknown:
            raise UsageError(f"{run.learner} has no hyperparameter {', '.join(unknown)}; "
                             f"valid: {', '.join(sorted(hp_fields))}")
        hp = config.hyperparams(**{**hp_preset, **user_hp})
        learner = module.make_learner(config, env, env_params)
    except (ValueError, TypeError) as err:
        raise UsageError(str(err).splitlines()[0]) from err
    return module, env, env_params, config, hp, learner, chunks


def policy_params(module: Any, state: Any) -> Any:
    """What a greedy policy needs from a learner state (network params or Q tables)."""
    return state.q if module is tabular_q else state.params


def greedy_policy(module: Any, config: Any, env: Any, params: Any):
    """``policy(key, timestep)`` acting greedily with ``policy_params``."""
    if module is actor_critic:
        return actor_critic.make_policy(config, env, params)
    if module is dqn:
        return dqn.greedy_policy(config, env, params)
    if module is value_decomposition:
        return value_decomposition.greedy_policy(config, env, params)
    return tabular_q.greedy_policy(env, params)


# --------------------------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------------------------
class Run:
    """A run folder being written: set up once, then ``chunk`` by chunk, then ``finish``."""

    def __init__(self, run: RunConfig, out: Path, distributed: bool = False) -> None:
        self.run, self.out = run, out
        (self.module, self.env, self.env_params, self.config, self.hp, self.learner,
         self.chunks) = build(run)
        self.updates_per_chunk = self.config.num_updates // self.chunks
        self.steps_per_update = self.config.num_envs * self.config.rollout_length
        try:  # seeds split over a device mesh; one device: left where JAX puts them
            if distributed:  # --devices of every process
                self.mesh = parallel.seed_mesh(run.devices, global_devices=True)
            else:
                self.mesh = parallel.seed_mesh(run.devices) if run.devices > 1 else None
        except ValueError as err:
            raise UsageError(f"--devices {run.devices}: {err}") from err
        if self.mesh is not None and run.seeds % self.mesh.size:
            raise UsageError(f"--seeds {run.seeds} must be a multiple of the {self.mesh.size} "
                             f"devices of {jax.process_count()} processes (--devices "
                             f"{run.devices} each)")
        learner = self.learner

        def chunk(state: Any) -> tuple[Any, dict[str, jax.Array]]:
            return jax.lax.scan(lambda c, _: learner.update(c), state, None,
                                length=self.updates_per_chunk)

        # over a mesh every output stays split by seed like the inputs: without this XLA
        # picks some outputs' shardings itself, and the second chunk compiles again
        shard = {} if self.mesh is None else {"out_shardings": parallel.leading_sharding(
            self.mesh)}
        self._init = jax.jit(jax.vmap(learner.init), **shard)
        self._chunk = jax.jit(jax.vmap(chunk), **shard)
        self._evals: dict[int, Any] = {}

    # -- state ---------------------------------------------------------------------------------
    def keys(self) -> jax.Array:
        return jax.random.split(jax.random.PRNGKey(self.run.seed), self.run.seeds)

    def initial(self) -> dict[str, Any]:
        keys, hps = self.keys(), stack_hyperparams(self.hp, self.run.seeds)
        if self.mesh is not None:
            keys, hps = parallel.shard_leading((keys, hps), self.mesh)
        learner_state = self._init(keys, hps)
        params = policy_params(self.module, learner_state)
        return {"learner": learner_state, "best_params": jax.tree.map(jnp.copy, params),
                "best_score": jnp.full((self.run.seeds,), -jnp.inf)}

    def abstract(self) -> Any:
        keys, hps = self.keys(), stack_hyperparams(self.hp, self.run.seeds)
        learner_state = jax.eval_shape(jax.vmap(self.learner.init), keys, hps)
        params = policy_params(self.module, learner_state)
        return {"learner": learner_state, "best_params": params,
                "best_score": jax.ShapeDtypeStruct((self.run.seeds,), jnp.float32)}

    def place(self, state: Any) -> Any:
        return state if self.mesh is None else parallel.shard_leading(state, self.mesh)

    # -- evaluation ------------------------------------------------------------------------------
    def evaluate(self, params: Any, episodes: int, key: jax.Array) -> dict[str, np.ndarray]:
        """Greedy episodes of every seed's ``params``: metric -> (seeds, episodes)."""
        if episodes not in self._evals:
            module, config, env, env_params = self.module, self.config, self.env, self.env_params
            self._evals[episodes] = jax.jit(jax.vmap(lambda p, k: evaluate(
                env, env_params, greedy_policy(module, config, env, p), k, episodes)))
        figures = parallel.gather(self._evals[episodes](
            params, jax.random.split(key, self.run.seeds)))
        return {k: np.asarray(v, np.float64).reshape(self.run.seeds, episodes, -1).mean(axis=2)
                for k, v in figures.items() if k != "agent_returns"}

    def eval_key(self, chunk: int) -> jax.Array:
        return jax.random.fold_in(jax.random.PRNGKey(self.run.seed + 1), chunk)

    def references(self, episodes: int) -> dict[str, dict[str, np.ndarray]]:
        out = {}
        # the random policy and the env's registered references (envs.reference_policies)
        factories = {"random": lambda env, _: random_policy(env),
                     **reference_policies(self.env)}
        for name, factory in factories.items():
            policy = factory(self.env, self.env_params)
            fn = jax.jit(jax.vmap(lambda k, policy=policy: evaluate(
                self.env, self.env_params, policy, k, episodes)))
            figures = parallel.gather(fn(jax.random.split(
                jax.random.PRNGKey(self.run.seed + 2), self.run.seeds)))
            out[name] = {k: np.asarray(v, np.float64).reshape(self.run.seeds, episodes, -1)
                         .mean(axis=2) for k, v in figures.items() if k != "agent_returns"}
        return out


def _summary(per_seed: dict[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    """metric -> mean ± 95% CI over seeds of each seed's episode mean."""
    out = {}
    for name, values in per_seed.items():
        seeds = values.mean(axis=1)
        mean, half = mean_ci95(seeds)
        out[name] = {"mean": mean, "ci95": half, "per_seed": seeds}
    return out


def _metric_rows(metrics: dict[str, np.ndarray], first_update: int, steps_per_update: int
                 ) -> list[list[Any]]:
    """CSV rows (seed, update, env_steps, metrics...) of one chunk's (seeds, updates) metrics."""
    names = sorted(metrics)
    arrays = [np.asarray(metrics[n], np.float64) for n in names]
    arrays = [a.reshape(a.shape[0], a.shape[1], -1).mean(axis=2) for a in arrays]
    seeds, updates = arrays[0].shape[:2]
    rows = []
    for s in range(seeds):
        for u in range(updates):
            update = first_update + u
            rows.append([s, update, update * steps_per_update, *(a[s, u] for a in arrays)])
    return rows


def _write_metrics(path: Path, names: list[str], rows: list[list[Any]]) -> None:
    lines = [",".join(["seed", "update", "env_steps", *names])]
    lines += [",".join([str(r[0]), str(r[1]), str(r[2]), *(f"{v:.6g}" for v in r[3:])])
              for r in sorted(rows, key=lambda r: (r[0], r[1]))]
    write_text_atomic(path, "\n".join(lines) + "\n")


def _read_metrics(path: Path, last_update: int) -> tuple[list[str], list[list[Any]]]:
    """Rows of ``metrics.csv`` up to ``last_update`` (a resumed run rewrites the rest)."""
    lines = path.read_text().splitlines()
    names = lines[0].split(",")[3:]
    rows = []
    for line in lines[1:]:
        parts = line.split(",")
        if int(parts[1]) <= last_update:
            rows.append([int(parts[0]), int(parts[1]), int(parts[2]),
                         *(float(p) for p in parts[3:])])
    return names, rows


def marl_eval_json(run: RunConfig, periodic: list[dict[str, Any]],
                   absolute: dict[str, np.ndarray] | None) -> dict[str, Any]:
    """The marl-eval layout: env -> task -> algorithm -> seed_i -> step_k / absolute_metrics,
    each metric a list of per-episode values."""
    seeds = {}
    for s in range(run.seeds):
        record: dict[str, Any] = {}
        for k, entry in enumerate(periodic):
            record[f"step_{k}"] = {"step_count": entry["env_steps"],
                                   **{m: list(v[s]) for m, v in entry["episodes"].items()}}
        if absolute is not None:
            record["absolute_metrics"] = {m: list(v[s]) for m, v in absolute.items()}
        seeds[f"seed_{s}"] = record
    return {"jaxmarl_coop": {run.env: {run.learner: seeds}}}


def keep_best(state: dict[str, Any], params: Any, score: jax.Array) -> dict[str, Any]:
    """Per seed, replace the best parameters by ``params`` where ``score`` beats the best."""
    better = score > state["best_score"]

    def pick(new: jax.Array, old: jax.Array) -> jax.Array:
        return jnp.where(better.reshape((-1,) + (1,) * (new.ndim - 1)), new, old)

    return {**state, "best_params": jax.tree.map(pick, params, state["best_params"]),
            "best_score": jnp.where(better, score, state["best_score"])}


def _default_out(run: RunConfig) -> Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{run.learner}-{run.env}-{stamp}"


def train(run: RunConfig, out: Path | None = None, resume: bool = False,
          stop_after_chunks: int | None = None, progress: bool | None = None,
          distributed: bool = False) -> dict[str, Any]:
    """Run ``run`` into the folder ``out`` (see the module docstring); returns eval.json's
    content (or ``{"stopped_after_chunk": c}`` when ``stop_after_chunks`` cut it short).

    ``distributed``: every process (joined by :func:`start_distributed`) calls ``train`` alike;
    the seeds are split over all their devices, and only process 0 writes ``out``.
    """
    main_process = parallel.is_main_process()
    # process 0 decides (its clock names the folder, its disk holds it); the others follow
    out = Path(parallel.broadcast_text(str(out or run.out or _default_out(run))))
    ckpt_dir = out / "checkpoints"
    taken = (f"{out} already holds a run; continue it with --resume {out} or choose another "
             "--out") if main_process and not resume and (out / "config.json").exists() else ""
    taken = parallel.broadcast_text(taken)
    if taken:
        raise UsageError(taken)
    r = Run(run, out, distributed)
    start_chunk, rows, names, periodic = 0, [], None, []
    state = r.initial()
    if resume:
        try:
            restored, meta = checkpoints.restore(ckpt_dir, r.abstract())
        except checkpoints.CheckpointError as err:
            raise UsageError(str(err)) from err
        state = r.place(restored)
        start_chunk = int(meta["chunks_done"])
        periodic = [{"env_steps": e["env_steps"],
                     "episodes": {k: np.asarray(v, np.float64)
                                  for k, v in e["episodes"].items()}}
                    for e in meta["periodic"]]
        if (out / "metrics.csv").exists():
            names, rows = _read_metrics(out / "metrics.csv",
                                        start_chunk * r.updates_per_chunk)
    elif main_process:
        write_json_atomic(out / "config.json", {
            "format_version": checkpoints.FORMAT_VERSION, "run": dataclasses.asdict(run),
            "out": str(out), "learner_config": dataclasses.asdict(r.config),
            "hyperparams": r.hp, "env_params": r.env_params,
            "num_updates": r.config.num_updates, "env_steps_per_update": r.steps_per_update,
            "chunks": r.chunks, "env_steps_per_seed": r.config.total_env_steps,
            "jax": jax.__version__, "backend": jax.default_backend(),
            "processes": jax.process_count(),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds"),
            "argv": sys.argv[1:]})

    total = r.config.num_updates
    bar = tqdm(total=total, initial=start_chunk * r.updates_per_chunk, unit="upd",
               desc=f"{run.learner} {run.env} x{run.seeds}",
               disable=progress is False or not main_process, file=sys.stdout, dynamic_ncols=True)
    t0, steps_at_t0 = time.perf_counter(), start_chunk * r.updates_per_chunk
    # this invocation's time, by part: the chunk program compiled apart (ahead of time),
    # training (chunks, synchronised by fetching their metrics), evaluation, checkpoints
    timing = {"compile_s": 0.0, "train_s": 0.0, "eval_s": 0.0, "checkpoint_s": 0.0,
              "chunks": r.chunks - start_chunk,
              "env_steps": (r.chunks - start_chunk) * r.updates_per_chunk * r.steps_per_update
              * run.seeds}
    if start_chunk < r.chunks:  # compiled into jit's cache, which the first call then hits
        r._chunk.lower(state["learner"]).compile()
        timing["compile_s"] = time.perf_counter() - t0
    for c in range(start_chunk, r.chunks):
        tick = time.perf_counter()
        learner_state, metrics = r._chunk(state["learner"])
        state = {**state, "learner": learner_state}
        metrics = parallel.gather(metrics)
        timing["train_s"] += time.perf_counter() - tick
        names = names or sorted(set(metrics) - {"seed", "update", "env_steps"})
        rows += _metric_rows({n: metrics[n] for n in names}, c * r.updates_per_chunk + 1,
                             r.steps_per_update)
        done = c + 1
        tick = time.perf_counter()
        if run.eval_every and (done % run.eval_every == 0 or done == r.chunks):
            params = policy_params(r.module, learner_state)
            episodes = r.evaluate(params, run.periodic_eval_episodes, r.eval_key(done))
            periodic.append({"env_steps": done * r.updates_per_chunk * r.steps_per_update,
                             "episodes": episodes})
            score = jnp.asarray(episodes["return"].mean(axis=1), jnp.float32)
            state = keep_best(state, params, score)
        timing["eval_s"] += time.perf_counter() - tick
        if main_process:
            _write_metrics(out / "metrics.csv", names, rows)
        tick = time.perf_counter()
        if run.checkpoint_every and (done % run.checkpoint_every == 0 or done == r.chunks):
            # distributed: every process joins orbax's save (its barriers are collective);
            # host arrays, which orbax writes from process 0 only
            saved = parallel.gather(state) if distributed else state
            checkpoints.save(ckpt_dir, done, saved, _json_ready({
                "chunks_done": done, "updates_done": done * r.updates_per_chunk,
                "run": dataclasses.asdict(run), "periodic": periodic}))
        timing["checkpoint_s"] += time.perf_counter() - tick
        bar.update(r.updates_per_chunk)
        elapsed = time.perf_counter() - t0
        rate = (done * r.updates_per_chunk - steps_at_t0) * r.steps_per_update * run.seeds
        bar.set_postfix(env_steps=f"{done * r.updates_per_chunk * r.steps_per_update:,}",
                        steps_per_s=f"{rate / max(elapsed, 1e-9):,.0f}",
                        mean_return=f"{_chunk_return(metrics['episode_return']):.2f}",
                        refresh=False)
        if stop_after_chunks is not None and done >= stop_after_chunks and done < r.chunks:
            bar.close()
            return {"stopped_after_chunk": done}
    bar.close()
    timing["env_steps_per_s"] = timing["env_steps"] / max(timing["train_s"], 1e-9)
    return finish(r, state, periodic, out, timing, t0)


def _chunk_return(returns: np.ndarray) -> float:
    """Mean over seeds of the episodes that finished in the chunk (NaN if none did)."""
    finite = np.asarray(returns, np.float64)
    finite = finite[np.isfinite(finite)]
    return float(finite.mean()) if finite.size else float("nan")


def _json_ready(d: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(_jsonable(d)))


def finish(r: Run, state: Any, periodic: list[dict[str, Any]], out: Path,
           timing: dict[str, Any] | None = None, t0: float | None = None) -> dict[str, Any]:
    """Final and absolute evaluations, references, eval.json, marl_eval.json, plot, GIF, and
    timing.json: per invocation of ``train`` (a resumed run adds one), its seconds by part
    (compile apart) and its training env steps/s over all seeds. Timing is kept out of
    eval.json, which depends on the key alone.

    Every process evaluates (collectives); only process 0 writes and prints."""
    run = r.run
    tick = time.perf_counter()
    final_params = policy_params(r.module, state["learner"])
    final = r.evaluate(final_params, run.eval_episodes, r.eval_key(FINAL_EVAL))
    best_score = np.asarray(parallel.gather(state["best_score"]))
    have_best = bool(np.all(np.isfinite(best_score)))
    absolute = r.evaluate(state["best_params"], run.eval_episodes, r.eval_key(FINAL_EVAL + 1)) \
        if have_best else final
    references = r.references(min(run.eval_episodes, 256))
    result = {
        "episodes_per_seed": run.eval_episodes, "final": _summary(final),
        "absolute": _summary(absolute),
        "absolute_from": "best periodic evaluation" if have_best else "final parameters",
        "best_periodic_return_per_seed": best_score,
        "references": {k: _summary(v) for k, v in references.items()},
        "periodic": [{"env_steps": e["env_steps"],
                      "return": _summary({"return": e["episodes"]["return"]})["return"]}
                     for e in periodic]}
    if timing is not None:
        timing = {**timing, "final_eval_s": time.perf_counter() - tick,
                  "backend": jax.default_backend(),
                  "device_kind": jax.devices()[0].device_kind}
        if t0 is not None:  # compile, training, evaluations and checkpoints
            timing["wall_s"] = time.perf_counter() - t0
    if run.gif and jax.process_count() > 1:  # host copies: process 0 renders alone
        final_params = parallel.gather(final_params)
    if not parallel.is_main_process():
        return result
    write_json_atomic(out / "eval.json", result)
    if timing is not None:
        earlier = []
        with contextlib.suppress(OSError, ValueError):  # a resumed run's earlier invocations
            earlier = json.loads((out / "timing.json").read_text())["invocations"]
        write_json_atomic(out / "timing.json", {"invocations": [*earlier, timing]})
    write_json_atomic(out / "marl_eval.json", marl_eval_json(run, periodic, absolute))
    _plot(out, result)
    if run.gif:
        _gif(r, final_params, out)
    ret = result["final"]["return"]
    print(f"greedy team return over {run.seeds} seeds: {ret['mean']:.2f} ± {ret['ci95']:.2f} "
          f"(95% CI; best parameters {result['absolute']['return']['mean']:.2f}); "
          f"run folder: {out}")
    if timing is not None:
        eval_s = timing["eval_s"] + timing["final_eval_s"]
        print(f"trained {timing['env_steps']:,} env steps in {timing['train_s']:.1f} s "
              f"({timing['env_steps_per_s']:,.0f} env steps/s over {run.seeds} seeds); compile "
              f"{timing['compile_s']:.1f} s, evaluation {eval_s:.1f} s, checkpoints "
              f"{timing['checkpoint_s']:.1f} s")
    return result


def _plot(out: Path, result: dict[str, Any]) -> None:
    from jaxmarl_coop import plots

    run = plots.load_run(out)
    refs = {name: ev["return"]["mean"] for name, ev in result["references"].items()}
    plots.plot_curves([run], metric="episode_return", references=refs,
                      path=out / "curve.png")


def _gif(r: Run, params: Any, out: Path) -> None:
    from jaxmarl_coop.envs import render

    seed0 = jax.tree.map(lambda x: x[0], params)
    policy = greedy_policy(r.module, r.config, r.env, seed0)
    try:
        render.animate(r.env, r.env_params, policy, jax.random.PRNGKey(r.run.seed + 3),
                       out / "rollout.gif")
    except NotImplementedError as err:  # an env without a picture: say so, keep the run
        print(f"no rollout.gif: {err}", file=sys.stderr)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    try:
        try:
            run, extras = parse_args(argv)
        except ValueError as err:  # RunConfig's checks: a bad value on the command line
            raise UsageError(str(err)) from err
        distributed = start_distributed(extras)  # before any other JAX use
        resume_dir = extras.get("resume")
        if resume_dir is not None:
            run = load_run_config(Path(resume_dir))
        return train(run, Path(resume_dir) if resume_dir else None,
                     resume=resume_dir is not None,
                     stop_after_chunks=extras.get("stop_after_chunks"), distributed=distributed)
    except UsageError as err:
        print(f"error: {str(err).splitlines()[0]}", file=sys.stderr)
        raise SystemExit(2) from None


def load_run_config(run_dir: Path) -> RunConfig:
    """The :class:`RunConfig` saved in ``run_dir/config.json`` (``UsageError`` if absent)."""
    path = run_dir / "config.json"
    if not path.is_file():
        raise UsageError(f"{run_dir} is not a run folder (no config.json)")
    saved = json.loads(path.read_text())
    version = saved.get("format_version")
    if version != checkpoints.FORMAT_VERSION:
        raise UsageError(f"{path} has format version {version!r}; this version reads "
                         f"{checkpoints.FORMAT_VERSION}")
    fields = saved["run"]
    for name in ("env_param", "hp", "config"):
        fields[name] = tuple(fields[name])
    fields["out"] = str(run_dir)
    return RunConfig(**fields)


if __name__ == "__main__":
    main()
