"""Reload a trained team from a run folder, evaluate it, and optionally animate it.

    python -m experiments.evaluate runs/mappo-tracking-v1-20261126-101500
    python -m experiments.evaluate RUN_DIR --episodes 1024 --which best --gif team.gif

The learner is rebuilt from the folder's ``config.json`` and every seed's parameters are
restored from its newest orbax checkpoint (``jaxmarl_coop.runs.team.load_team``; one seed's
team as a policy: ``jaxmarl_coop.load_policy``) (``--which final``: the parameters at that
checkpoint; ``best``: the best periodic evaluation so far). Each seed plays ``--episodes``
greedy episodes; the table gives mean ± 95% CI over seeds, and ``--json`` writes it.
``--gif`` animates seed ``--seed-index``. Neither may name one of a run's own files
(config.json, metrics.csv, eval.json, ..., checkpoints/: refused in one line); an unreadable
newest checkpoint is skipped with a warning (docs/bad-input.md).
"""

from __future__ import annotations

from jaxmarl_coop.runtime import configure_xla

configure_xla()

import argparse  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import jax  # noqa: E402

from experiments.cli import Parser, UsageError, one_line_errors  # noqa: E402
from jaxmarl_coop.envs.core import Env  # noqa: E402
from jaxmarl_coop.runs import folder  # noqa: E402
from jaxmarl_coop.runs.config import MAX_SEED  # noqa: E402
from jaxmarl_coop.runs.io import write_json_atomic  # noqa: E402
from jaxmarl_coop.runs.team import WHICH, load_team  # noqa: E402
from jaxmarl_coop.runs.training import summary  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = Parser(prog="python -m experiments.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", help="a run folder written by experiments.train")
    p.add_argument("--episodes", type=int, default=256, help="greedy episodes per seed")
    p.add_argument("--which", choices=WHICH, default="final",
                   help="the checkpoint's parameters, or its best-so-far parameters")
    p.add_argument("--seed", type=int, default=12345, help="evaluation PRNG seed")
    p.add_argument("--gif", default=None, metavar="PATH", help="write an animation here")
    p.add_argument("--seed-index", type=int, default=0, help="which seed to animate")
    p.add_argument("--json", default=None, metavar="PATH", help="write the results here")
    return p.parse_args(argv)


@one_line_errors
def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.episodes < 1:
        raise UsageError(f"--episodes must be >= 1, got {args.episodes}")
    if not 0 <= args.seed <= MAX_SEED:
        raise UsageError(f"--seed must be an integer in 0 .. {MAX_SEED}, got {args.seed}")
    outputs = [(flag, value) for flag, value in (("--json", args.json), ("--gif", args.gif))
               if value is not None]
    for flag, value in outputs:  # before anything is loaded: a refused path writes nothing
        try:
            folder.check_output_file(value, flag)
        except ValueError as err:
            raise UsageError(str(err)) from None
    if len(outputs) == 2 and Path(args.json).resolve() == Path(args.gif).resolve():
        raise UsageError(f"--json and --gif name the same file {args.json}")
    run_dir = Path(args.run_dir)
    run, params, meta = load_team(run_dir, args.which)
    if not 0 <= args.seed_index < run.run.seeds:
        raise UsageError(f"--seed-index {args.seed_index} is not one of the run's "
                         f"{run.run.seeds} seeds (0..{run.run.seeds - 1})")
    if args.gif and type(run.env).render is Env.render:  # before anything is written
        raise UsageError(f"--gif: {run.run.env} draws no picture (it has no render)")
    result_summary = summary(run.evaluate(params, args.episodes, jax.random.PRNGKey(args.seed)))
    steps = meta["updates_done"] * run.steps_per_update
    print(f"{run.run.learner} on {run.run.env}, {run.run.seeds} seeds, {args.which} parameters "
          f"after {steps:,} env steps per seed; {args.episodes} greedy episodes per seed:")
    for name, s in result_summary.items():
        print(f"  {name:<22} {s['mean']:>10.3f} ± {s['ci95']:.3f}")
    result = {"run_dir": str(run_dir), "which": args.which, "env_steps_per_seed": steps,
              "episodes_per_seed": args.episodes, "evaluation": result_summary}
    if args.json:
        write_json_atomic(args.json, result)
    if args.gif:
        from jaxmarl_coop.envs import render

        one = jax.tree.map(lambda x: x[args.seed_index], params)
        path = render.animate(run.env, run.env_params, run.policy(one),
                              jax.random.PRNGKey(args.seed), args.gif)
        print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main()
