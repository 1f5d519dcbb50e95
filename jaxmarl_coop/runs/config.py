"""What a run is: :class:`RunConfig` (the command line is generated from its fields), the
``NAME=VALUE`` pairs it carries, and the named presets (``jaxmarl_coop.presets``)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

from jaxmarl_coop.presets import TRAIN_PRESETS


class UsageError(ValueError):
    """A user error (a bad option, a folder that is not a run, ...): one line, no traceback."""


def parse_value(value: str) -> Any:
    """``"3"`` -> 3, ``"0.5"`` -> 0.5, ``"true"``/``"false"`` -> bool, else the string.

    ``"inf"``/``"-inf"``/``"nan"`` are floats; digits too many for a float (``"9" * 400``)
    stay a string rather than becoming an infinity nobody typed."""
    try:
        return int(value)
    except ValueError:  # not an int (or more digits than Python converts)
        pass
    try:
        number = float(value)
    except ValueError:
        return {"true": True, "false": False}.get(value.lower(), value)
    if math.isinf(number) and "inf" not in value.lower():
        return value
    return number


def parse_pairs(pairs: Sequence[str], what: str) -> dict[str, Any]:
    """``("lr=0.001", "hidden=64,64")`` -> ``{"lr": 0.001, "hidden": "64,64"}``;
    ``ValueError`` naming ``what`` for a pair without ``=``."""
    out = {}
    for pair in pairs:
        if not isinstance(pair, str) or "=" not in pair:
            raise ValueError(f"{what} must look like NAME=VALUE, got {pair!r}")
        name, value = pair.split("=", 1)
        out[name.strip()] = parse_value(value.strip())
    return out


def as_pairs(value: Mapping[str, Any] | Sequence[str]) -> tuple[str, ...]:
    """``{"lr": 0.001}`` or ``["lr=0.001"]`` as the tuple ``("lr=0.001",)``."""
    if isinstance(value, Mapping):
        def text(v: Any) -> str:
            if isinstance(v, bool):
                return str(v).lower()
            if isinstance(v, (tuple, list)):
                return ",".join(str(x) for x in v)
            return str(v)

        return tuple(f"{k}={text(v)}" for k, v in value.items())
    if isinstance(value, str):
        return (value,)
    return tuple(value)


#: the largest ``--seed``: ``PRNGKey`` wraps at 2**32 and the run also uses seed+1 .. seed+3
MAX_SEED = 2**31 - 1


def _field(default: Any, help: str) -> Any:
    return dataclasses.field(default=default, metadata={"help": help})


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """One run: what to train, on what, for how long, and what to record.

    ``env_param``, ``hp`` and ``config`` are ``NAME=VALUE`` strings (a dict is accepted and
    turned into them): env options and params, traced hyperparameters, and learner config
    fields (static: shapes and counts).
    """

    learner: str = _field("mappo", "a registered learner (learners.registry.learner_names())")
    env: str = _field("tracking-v1", "a registered env id (jaxmarl_coop.envs.registered()), "
                                     "or jaxmarl:NAME for a JaxMARL env")
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
    logger: str = _field("csv", "where metrics go besides metrics.csv: csv (nothing more), "
                                "tensorboard, wandb, or several comma-separated")

    def __post_init__(self) -> None:
        from jaxmarl_coop.envs import registered
        from jaxmarl_coop.envs.registry import known
        from jaxmarl_coop.learners.registry import learner_names

        for name in ("learner", "env", "out", "logger"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"--{name} must be a string, got {getattr(self, name)!r}")
        if not isinstance(self.gif, bool):
            raise ValueError(f"--gif must be true or false, got {self.gif!r}")
        for name in ("env_param", "hp", "config"):
            value = getattr(self, name)
            if not isinstance(value, (str, Mapping, list, tuple)):
                raise ValueError(f"--{name.replace('_', '-')} must be NAME=VALUE strings, got "
                                 f"{value!r}")
            object.__setattr__(self, name, as_pairs(value))
        if self.learner not in learner_names():
            raise ValueError(f"unknown learner {self.learner!r}; choose from "
                             f"{', '.join(learner_names())}")
        if not known(self.env):
            raise ValueError(f"unknown env {self.env!r}; choose from {', '.join(registered())} "
                             "or jaxmarl:NAME (a JaxMARL env)")
        for name, low in (("seeds", 1), ("env_steps", 1), ("chunks", 1), ("eval_every", 0),
                          ("periodic_eval_episodes", 1), ("eval_episodes", 1),
                          ("checkpoint_every", 0), ("devices", 1), ("seed", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"--{name.replace('_', '-')} must be an integer >= {low}, "
                                 f"got {value!r}")
        if self.seed > MAX_SEED:  # PRNGKey wraps at 2**32, and seed+1..3 key the evaluations
            raise ValueError(f"--seed must be an integer in 0 .. {MAX_SEED}, got {self.seed}")
        if self.seeds % self.devices:
            raise ValueError(f"--seeds {self.seeds} must be a multiple of --devices "
                             f"{self.devices} (seeds are split evenly over devices)")
        for name in ("env_param", "hp", "config"):
            parse_pairs(getattr(self, name), f"--{name.replace('_', '-')}")
        from jaxmarl_coop.loggers import parse_logger_names

        parse_logger_names(self.logger)


def preset_names() -> tuple[str, ...]:
    """The named runs of ``jaxmarl_coop.presets.TRAIN_PRESETS`` (``--preset NAME``)."""
    return tuple(TRAIN_PRESETS)


def preset(name: str, **overrides: Any) -> RunConfig:
    """The named preset (``jaxmarl_coop.presets.TRAIN_PRESETS``) with ``overrides``; its
    ``env_param``/``hp``/``config`` pairs come first and those of ``overrides`` win."""
    if name not in TRAIN_PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {', '.join(TRAIN_PRESETS)}")
    base = dict(TRAIN_PRESETS[name])
    for key in ("env_param", "hp", "config"):
        if key in overrides:
            overrides[key] = (*as_pairs(base.get(key, ())), *as_pairs(overrides[key]))
    return RunConfig(**{**base, **overrides})
