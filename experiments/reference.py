"""Evaluate the reference policies of a task over several seeds, with results on disk.

    python -m experiments.reference                       # tracking-v1: random vs greedy chase
    python -m experiments.reference --env spread-v3 --seeds 8 --episodes 1024
    python -m experiments.reference --env load-balancing-v1   # random, round robin, JSQ ...

The policies are the random one and the env's registered references
(``jaxmarl_coop.envs.reference_policies``).

Each seed evaluates ``--episodes`` episodes in chunks (one jitted, seed-vmapped call per
chunk, a progress bar between chunks). The run folder gets ``config.json`` and
``results.json`` (per policy and metric: mean and 95% CI over seeds, and per-seed means),
and a table is printed.
"""

from __future__ import annotations

from jaxmarl_coop.runtime import configure_xla

configure_xla()

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from experiments.cli import Parser  # noqa: E402
from jaxmarl_coop.envs import (  # noqa: E402
    make,
    random_policy,
    reference_policies,
    registered,
)
from jaxmarl_coop.learners.evaluation import evaluate  # noqa: E402
from jaxmarl_coop.runs import folder, mean_ci95, write_json_atomic  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = Parser(prog="python -m experiments.reference",
                    description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="tracking-v1", help=f"one of {registered()}")
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--episodes", type=int, default=4096, help="episodes per seed")
    parser.add_argument("--chunk", type=int, default=512, help="episodes per jitted call")
    parser.add_argument("--out", default=None, help="run folder (default runs/reference-ENV)")
    args = parser.parse_args(argv)
    if args.env not in registered():
        parser.error(f"unknown env {args.env!r}; choose from {', '.join(registered())}")
    for name in ("seeds", "episodes", "chunk"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    # it gets config.json and results.json: never inside, or over, a run's own files
    args.out = args.out or f"runs/reference-{args.env}"
    try:
        folder.check_out_folder(args.out)
    except ValueError as err:
        parser.error(str(err))
    if folder.is_run_folder(Path(args.out)):
        parser.error(f"--out {args.out} holds a training run or a sweep, whose config.json "
                     "this would overwrite; choose another --out")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    env, params = make(args.env)
    out = Path(args.out or f"runs/reference-{args.env}")
    chunk = min(args.chunk, args.episodes)
    num_chunks = -(-args.episodes // chunk)
    config = {"env": args.env, "seeds": args.seeds, "episodes_per_seed": num_chunks * chunk,
              "chunk": chunk, "params": params, "jax": jax.__version__,
              "backend": jax.default_backend()}
    write_json_atomic(out / "config.json", config)
    results = {}
    factories = {"random": lambda env, _: random_policy(env), **reference_policies(env)}
    for name, factory in factories.items():
        policy = factory(env, params)
        run_chunk = jax.jit(jax.vmap(lambda key, p=policy: evaluate(env, params, p, key, chunk)))
        per_chunk = []
        start = time.perf_counter()
        bar = tqdm(range(num_chunks), desc=f"{args.env} {name}", unit="chunk",
                   disable=None, file=sys.stdout)
        for c in bar:
            keys = jax.vmap(lambda s, c=c: jax.random.fold_in(jax.random.PRNGKey(s), c))(
                np.arange(args.seeds))
            figures = jax.device_get(run_chunk(keys))  # each (seeds, chunk)
            per_chunk.append(figures)
            done = (c + 1) * chunk * args.seeds
            bar.set_postfix(episodes=done, mean_return=f"{np.mean(figures['return']):.2f}")
        merged = {k: np.concatenate([f[k] for f in per_chunk], axis=1) for k in per_chunk[0]
                  if k != "agent_returns"}
        summary = {}
        for metric, values in merged.items():
            seed_means = values.astype(np.float64).mean(axis=1)
            mean, ci = mean_ci95(seed_means)
            summary[metric] = {"mean": mean, "ci95": ci, "per_seed": seed_means}
        summary["wall_s"] = time.perf_counter() - start
        results[name] = summary
    write_json_atomic(out / "results.json", results)
    print(f"\n{args.env}: mean ± 95% CI over {args.seeds} seeds, "
          f"{num_chunks * chunk} episodes each")
    metrics = [m for m in next(iter(results.values())) if m not in ("wall_s", "completed")]
    print(f"{'policy':<14}" + "".join(f"{m:>22}" for m in metrics))
    for name, summary in results.items():
        cells = "".join(f"{summary[m]['mean']:>13.3f} ± {summary[m]['ci95']:<6.3f}"
                        for m in metrics)
        print(f"{name:<14}{cells}")
    print(f"results: {out / 'results.json'}")
    return results


if __name__ == "__main__":
    main()
