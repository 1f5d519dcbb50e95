"""Train a team: any learner on any env, several seeds in one program, results on disk.

    python -m experiments.train                              # MAPPO on tracking-v1, 4 seeds
    python -m experiments.train --preset spread-mappo --seeds 8
    python -m experiments.train --learner dqn --env spread-v3 --env-steps 2000000
    python -m experiments.train --learner tabular_q --env penalty-v1 --env-param k=-25
    python -m experiments.train --logger tensorboard         # also TensorBoard event files
    python -m experiments.train --resume runs/mappo-tracking-v1-20261126-101500

The options are the fields of ``jaxmarl_coop.runs.RunConfig`` (the command line is generated
from it); ``--preset NAME`` starts from a named run of ``jaxmarl_coop.presets``, and explicit
options override it. ``--config`` sets learner config fields (static: shapes and counts),
``--hp`` hyperparameters (traced), ``--env-param`` env options and params, each NAME=VALUE.
The run itself is ``jaxmarl_coop.runs.run`` (the chunked loop, evaluation, checkpoints); the
run folder's files are described in ``jaxmarl_coop.runs.folder``. ``--resume RUN_DIR``
continues from the newest intact checkpoint and ends exactly where the uninterrupted run
would; it takes no other run option, except ``--env-steps N`` to extend the run to N env
steps per seed (docs/bad-input.md: what is refused, and what an extension changes).

Several processes (hosts), one program: start the same command in every process with
``--distributed``. It calls ``jax.distributed.initialize`` before any other JAX use, with
``--coordinator-address HOST:PORT --num-processes N --process-id I`` where given, otherwise
with what JAX detects (Slurm, Open MPI, TPU pods, ...). The seeds are split over one global
mesh: ``--devices`` local devices of every process (--seeds must divide by devices x
processes). Only process 0 writes the run folder and prints. ``--resume`` reads the run
folder in every process: keep it on a filesystem they share.

    python -m experiments.train --preset spread-mappo --distributed      # under srun, etc.
    python -m experiments.train --distributed --coordinator-address 10.0.0.1:1234 \
        --num-processes 2 --process-id 0                              # and 1 on host two
"""

from __future__ import annotations

from jaxmarl_coop.runtime import configure_xla

configure_xla()

import argparse  # noqa: E402
import dataclasses  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from experiments.cli import (  # noqa: E402
    DISTRIBUTED_OPTIONS,
    Parser,
    add_dataclass_options,
    add_distributed_options,
    one_line_errors,
    start_distributed,
)
from jaxmarl_coop.runs import RunConfig, UsageError, preset, preset_names  # noqa: E402
from jaxmarl_coop.runs.training import RunResult, load_run_config, run  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    """The command line, generated from the fields of ``RunConfig``."""
    parser = Parser(prog="python -m experiments.train", description=__doc__.split("\n\n")[0],
                    argument_default=argparse.SUPPRESS)
    parser.add_argument("--preset", choices=preset_names(), metavar="NAME",
                        help=f"start from a named run: {', '.join(preset_names())}")
    parser.add_argument("--resume", metavar="RUN_DIR",
                        help="continue the run in RUN_DIR from its newest checkpoint")
    parser.add_argument("--stop-after-chunks", type=int, help=argparse.SUPPRESS)
    add_distributed_options(parser, suppress=True)
    add_dataclass_options(parser, RunConfig)
    return parser


#: what may come with --resume RUN_DIR besides where and how it runs: --env-steps, to extend
RESUME_OPTIONS = ("env_steps",)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def parse_args(argv: list[str] | None = None) -> tuple[RunConfig, dict[str, Any]]:
    """``(RunConfig, extras)`` from the command line; ``extras`` holds the resume, stop and
    distributed options given. ``UsageError`` for a bad value (naming it).

    With ``--resume RUN_DIR`` the RunConfig is the folder's own (its config.json), with
    ``--env-steps`` if given (to extend the run); any other run option is refused."""
    given = vars(build_parser().parse_args(argv))
    extras = {k: given.pop(k) for k in ("resume", "stop_after_chunks", *DISTRIBUTED_OPTIONS)
              if k in given}
    if "resume" in extras:
        others = [k for k in given if k not in RESUME_OPTIONS]
        if others:
            raise UsageError(f"{', '.join(map(_flag, others))}: not with --resume, which "
                             "continues the run with the settings of its checkpoint (only "
                             "--env-steps may be given, to extend it)")
        config = load_run_config(Path(extras["resume"]))
        if "env_steps" in given:
            try:
                config = dataclasses.replace(config, env_steps=given["env_steps"])
            except ValueError as err:
                raise UsageError(str(err)) from err
        return config, extras
    try:
        if "preset" in given:
            return preset(given.pop("preset"), **given), extras
        return RunConfig(**given), extras
    except ValueError as err:  # RunConfig's checks: a bad value on the command line
        raise UsageError(str(err)) from err


@one_line_errors
def main(argv: list[str] | None = None) -> RunResult:
    config, extras = parse_args(argv)
    distributed = start_distributed(extras)  # before any other JAX use
    resume_dir = extras.get("resume")
    return run(config, Path(resume_dir) if resume_dir else None, resume=resume_dir is not None,
               stop_after_chunks=extras.get("stop_after_chunks"), distributed=distributed)


if __name__ == "__main__":
    main()
