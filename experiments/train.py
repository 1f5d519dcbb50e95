"""Train a team: any learner on any env, several seeds in one program, results on disk.

    python -m experiments.train                      # MAPPO on tracking-v1, 4 seeds
    python -m experiments.train --learner dqn --env spread-v3 --seeds 8 --env-steps 2000000
    python -m experiments.train --learner tabular_q --env penalty-v1 --env-param k=-25

The run is a Python loop over jitted chunks of ``update`` (the same function ``train``
scans), vmapped over seeds; between chunks a progress bar shows updates, env steps,
throughput and the mean return over seeds, and the metrics are appended to disk. At the
end every seed's final policy is evaluated greedily. The run folder holds ``config.json``,
``metrics.csv`` (one row per seed and update) and ``eval.json`` (per seed and mean ± 95% CI
over seeds).
"""

from __future__ import annotations

from jaxmarl_coop.runtime import configure_xla

configure_xla()

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from jaxmarl_coop.envs import make, registered  # noqa: E402
from jaxmarl_coop.learners import actor_critic, dqn, tabular_q  # noqa: E402
from jaxmarl_coop.learners.base import stack_hyperparams  # noqa: E402
from jaxmarl_coop.learners.evaluation import evaluate  # noqa: E402
from jaxmarl_coop.runs import mean_ci95, write_json_atomic, write_text_atomic  # noqa: E402

#: learner name -> (module, config preset, hyperparameter preset); --config / --hp override
LEARNERS: dict[str, tuple[Any, dict[str, Any], dict[str, Any]]] = {
    "mappo": (actor_critic, {"algorithm": "ppo", "critic": "centralised"}, {"lr": 2e-3}),
    "ippo": (actor_critic, {"algorithm": "ppo", "critic": "local"}, {"lr": 2e-3}),
    "maa2c": (actor_critic, {"algorithm": "a2c", "critic": "centralised", "rollout_length": 16},
              {"lr": 1e-3}),
    "ia2c": (actor_critic, {"algorithm": "a2c", "critic": "local", "rollout_length": 16},
             {"lr": 1e-3}),
    "dqn": (dqn, {"num_envs": 16, "rollout_length": 4, "buffer_size": 50_000,
                  "batch_size": 128, "learning_starts": 5_000, "target_update_interval": 50},
            {"lr": 1e-3, "gamma": 0.95, "epsilon_decay_fraction": 0.3}),
    "tabular_q": (tabular_q, {}, {}),
}
CONFIG_CLASSES = {actor_critic: actor_critic.ActorCriticConfig, dqn: dqn.DQNConfig,
                  tabular_q: tabular_q.TabularQConfig}


class UsageError(Exception):
    """A user error: reported as one line, no traceback."""


def _parse_pairs(pairs: list[str], what: str) -> dict[str, Any]:
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise UsageError(f"{what} must look like name=value, got {pair!r}")
        name, value = pair.split("=", 1)
        try:
            out[name] = int(value)
        except ValueError:
            try:
                out[name] = float(value)
            except ValueError:
                out[name] = {"true": True, "false": False}.get(value.lower(), value)
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--learner", default="mappo", help=f"one of {', '.join(LEARNERS)}")
    parser.add_argument("--env", default="tracking-v1", help="a registered env id")
    parser.add_argument("--env-param", action="append", default=[], metavar="NAME=VALUE",
                        help="env option or param, e.g. num_agents=3 or k=-25 (repeatable)")
    parser.add_argument("--hp", action="append", default=[], metavar="NAME=VALUE",
                        help="hyperparameter, e.g. lr=0.001 (repeatable)")
    parser.add_argument("--config", action="append", default=[], metavar="NAME=VALUE",
                        help="learner config field, e.g. num_envs=32 (repeatable)")
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--env-steps", type=int, default=1_000_000,
                        help="env steps per seed (rounded up to whole updates)")
    parser.add_argument("--chunks", type=int, default=20, help="progress/log points")
    parser.add_argument("--eval-episodes", type=int, default=256)
    parser.add_argument("--out", default=None, help="run folder (default runs/LEARNER-ENV)")
    return parser.parse_args(argv)


def build(args: argparse.Namespace):
    """Env, learner config and hyperparameters from the arguments (``UsageError`` if bad)."""
    if args.learner not in LEARNERS:
        raise UsageError(f"unknown learner {args.learner!r}; choose from {', '.join(LEARNERS)}")
    if args.env not in registered():
        raise UsageError(f"unknown env {args.env!r}; choose from {', '.join(registered())}")
    for name in ("seeds", "env_steps", "chunks", "eval_episodes"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got "
                             f"{getattr(args, name)}")
    module, overrides, hp_preset = LEARNERS[args.learner]
    try:
        env, env_params = make(args.env, **_parse_pairs(args.env_param, "--env-param"))
        fields = {f.name for f in dataclasses.fields(CONFIG_CLASSES[module])}
        user_config = _parse_pairs(args.config, "--config")
        unknown = sorted(set(user_config) - fields)
        if unknown:
            raise UsageError(f"{args.learner} has no config field {', '.join(unknown)}; valid: "
                             f"{', '.join(sorted(fields))}")
        config_kw = {**overrides, **user_config}
        if "hidden" in config_kw and isinstance(config_kw["hidden"], (int, str)):
            config_kw["hidden"] = tuple(int(h) for h in str(config_kw["hidden"]).split(","))
        probe = CONFIG_CLASSES[module](**{**config_kw, "num_updates": 1})
        steps_per_update = probe.num_envs * probe.rollout_length
        num_updates = -(-args.env_steps // steps_per_update)
        chunks = min(args.chunks, num_updates)
        num_updates = -(-num_updates // chunks) * chunks
        config = CONFIG_CLASSES[module](**{**config_kw, "num_updates": num_updates})
        hp_fields = {f.name for f in dataclasses.fields(type(config.hyperparams()))}
        user_hp = _parse_pairs(args.hp, "--hp")
        unknown = sorted(set(user_hp) - hp_fields)
        if unknown:
            raise UsageError(f"{args.learner} has no hyperparameter {', '.join(unknown)}; "
                             f"valid: {', '.join(sorted(hp_fields))}")
        hp = config.hyperparams(**{**hp_preset, **user_hp})
        learner = module.make_learner(config, env, env_params)
    except (ValueError, TypeError) as err:
        raise UsageError(str(err).splitlines()[0]) from err
    return module, env, env_params, config, hp, learner, chunks


def greedy_policy(module: Any, config: Any, env: Any, state: Any):
    if module is actor_critic:
        return actor_critic.make_policy(config, env, state.params)
    if module is dqn:
        return dqn.greedy_policy(config, env, state.params)
    return tabular_q.greedy_policy(env, state.q)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    try:
        module, env, env_params, config, hp, learner, chunks = build(args)
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    out = Path(args.out or f"runs/{args.learner}-{args.env}")
    updates_per_chunk = config.num_updates // chunks
    write_json_atomic(out / "config.json", {
        "learner": args.learner, "env": args.env, "env_options": args.env_param,
        "env_params": env_params, "config": dataclasses.asdict(config), "hyperparams": hp,
        "seeds": args.seeds, "env_steps_per_seed": config.total_env_steps,
        "jax": jax.__version__, "backend": jax.default_backend(), "argv": sys.argv[1:]})

    keys = jax.random.split(jax.random.PRNGKey(0), args.seeds)
    hps = stack_hyperparams(hp, args.seeds)
    init = jax.jit(jax.vmap(learner.init))

    @jax.jit
    def run_chunk(state):
        return jax.vmap(lambda s: jax.lax.scan(lambda c, _: learner.update(c), s, None,
                                               length=updates_per_chunk))(state)

    state = init(keys, hps)
    rows: list[dict[str, Any]] = []
    start = time.perf_counter()
    bar = tqdm(range(chunks), desc=f"{args.learner} {args.env}", unit="chunk", disable=None,
               file=sys.stdout)
    for c in bar:
        state, metrics = run_chunk(state)
        metrics = jax.device_get(metrics)  # each (seeds, updates_per_chunk)
        for seed in range(args.seeds):
            for u in range(updates_per_chunk):
                rows.append({"seed": seed, "update": c * updates_per_chunk + u + 1,
                             **{k: float(np.asarray(v[seed, u]).mean())
                                for k, v in metrics.items()}})
        _write_csv(out / "metrics.csv", rows)
        done = (c + 1) * updates_per_chunk * config.num_envs * config.rollout_length
        elapsed = time.perf_counter() - start
        bar.set_postfix(env_steps=done, steps_per_s=f"{done * args.seeds / elapsed:,.0f}",
                        mean_return=f"{np.nanmean(metrics['episode_return'][:, -1]):.2f}")

    evaluation = jax.jit(jax.vmap(lambda s, k: evaluate(
        env, env_params, greedy_policy(module, config, env, s), k, args.eval_episodes)))
    figures = jax.device_get(evaluation(state, jax.random.split(jax.random.PRNGKey(1),
                                                                 args.seeds)))
    per_seed = {k: np.asarray(v, np.float64).reshape(args.seeds, args.eval_episodes, -1)
                .mean(axis=(1, 2)) for k, v in figures.items() if k != "agent_returns"}
    summary = {k: dict(zip(("mean", "ci95"), mean_ci95(v), strict=True)) | {"per_seed": v}
               for k, v in per_seed.items()}
    result = {"greedy_eval": summary, "episodes_per_seed": args.eval_episodes,
              "wall_s": time.perf_counter() - start}
    write_json_atomic(out / "eval.json", result)
    ret = summary["return"]
    print(f"greedy team return over {args.seeds} seeds: {ret['mean']:.2f} ± {ret['ci95']:.2f} "
          f"(95% CI); run folder: {out}")
    return result


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    fields = list(rows[0])
    lines = [",".join(fields)]
    lines += [",".join(f"{row[f]:.6g}" if isinstance(row[f], float) else str(row[f])
                       for f in fields) for row in rows]
    write_text_atomic(path, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
