"""Sweep hyperparameters and env params over seeds: one compiled program, results on disk.

    python -m experiments.sweep --learner mappo --env spread-v3 \
        --grid lr=0.0003,0.001,0.003 --grid ent_coef=0,0.01 --seeds 8 --env-steps 200000
    python -m experiments.sweep --learner tabular_q --env penalty-v1 \
        --grid alpha=0.05,0.1,0.5 --grid k=-100,-25,0 --seeds 16 --env-steps 100000

Each ``--grid NAME=V1,V2,...`` is one axis of a cartesian grid; NAME is a hyperparameter of
the learner (traced) or a param of the env (traced: a field of its ``default_params()``;
constructor options such as ``num_agents`` are static shapes and need separate runs).
``--hp``, ``--env-param`` and ``--config`` set the fixed rest, as in ``experiments.train``.
Every grid point x seed is one lane of ``jax.vmap(train)``: ``learner.train`` for the whole
budget, then a greedy evaluation of the final parameters, all compiled once and sharded over
``--devices`` (``jaxmarl_coop.parallel.run_grid``). Env-param axes build the learner inside
the vmapped function around that lane's params (learners read their env params only when
called). Seed ``s`` of every point trains and evaluates with the keys of seed ``s`` of
``experiments.train`` (the same ``--seed``), so points differ only in their settings.

The folder (``--out``, default ``runs/sweep-LEARNER-ENV-TIMESTAMP``):

    config.json     the options, axes, learner config, fixed hyperparameters, env params
    results.csv     one row per grid point x seed: the axis values, seed, training return
                    (mean of the last 5% of updates), greedy return of the final parameters
                    (and the env's other evaluation metrics)
    summary.json    per grid point mean ± 95% CI over seeds, sorted best greedy return first
    heatmap.png     2 axes: mean greedy return per cell; otherwise per point with its CI

The sweep itself is ``jaxmarl_coop.runs.sweep.sweep`` (``SweepConfig``), usable from Python.

``--distributed`` (with ``--coordinator-address``, ``--num-processes``, ``--process-id`` or
JAX's detection, as in ``experiments.train``) runs the same command in several processes as
one program: the runs are split over ``--devices`` devices of every process, each process
puts only its own runs' inputs on its devices, the results are gathered to every process,
and only process 0 writes the folder and prints (the others write nothing).
"""

from __future__ import annotations

from jaxmarl_coop.runtime import configure_xla

configure_xla()

import argparse  # noqa: E402
from typing import Any  # noqa: E402

from experiments.cli import (  # noqa: E402
    Parser,
    add_distributed_options,
    one_line_errors,
    start_distributed,
)
from jaxmarl_coop.learners.registry import learner_names  # noqa: E402
from jaxmarl_coop.runs.sweep import sweep  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    """The command line (errors are one line, exit status 2)."""
    p = Parser(prog="python -m experiments.sweep", description=__doc__.split("\n\n")[0])
    p.add_argument("--learner", default="mappo", help=f"learner: {', '.join(learner_names())}")
    p.add_argument("--env", default="tracking-v1", help="a registered env id")
    p.add_argument("--grid", action="append", required=True, metavar="NAME=V1,V2,...",
                   help="a grid axis: hyperparameter or env param and its values (repeatable)")
    p.add_argument("--seeds", type=int, default=4, help="seeds per grid point")
    p.add_argument("--env-steps", type=int, default=200_000, help="env steps per run")
    p.add_argument("--hp", action="append", default=[], metavar="NAME=VALUE",
                   help="fixed hyperparameter (repeatable)")
    p.add_argument("--env-param", action="append", default=[], metavar="NAME=VALUE",
                   help="fixed env option or param (repeatable)")
    p.add_argument("--config", action="append", default=[], metavar="NAME=VALUE",
                   help="learner config field (repeatable)")
    p.add_argument("--eval-episodes", type=int, default=64,
                   help="greedy episodes per run of the final evaluation")
    p.add_argument("--seed", type=int, default=0, help="base PRNG seed (as in train)")
    p.add_argument("--devices", type=int, default=None,
                   help="local devices to shard the runs over (default: all; with "
                        "--distributed, of every process)")
    p.add_argument("--out", default="", help="result folder")
    add_distributed_options(p)
    return p


@one_line_errors
def main(argv: list[str] | None = None) -> dict[str, Any]:
    """The command line; a user error exits with one line (status 2), no traceback."""
    args = build_parser().parse_args(argv)
    start_distributed(vars(args))  # before any other JAX use
    return sweep(args, argv)


if __name__ == "__main__":
    main()
