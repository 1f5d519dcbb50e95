"""Learners by name: ``make_learner("mappo", env, env_params, **config) -> (learner, config)``.

Every learner module has the same face (the learner protocol, checked when it registers):

- ``Config``: its config class, a ``LearnerConfig`` (static: shapes and counts; it states
  ``num_envs``, ``rollout_length``, ``num_updates``, ``total_env_steps``, ``hyperparams()``);
- ``Hyperparams``: its traced hyperparameters (a pytree of floats; vmappable);
- ``make_learner(config, env, env_params) -> Learner`` (``init``, ``update``, ``train``);
- ``make_policy(config, env, params, greedy=True) -> Policy`` (``envs.policy``);
- ``policy_params(state)``: what ``make_policy`` needs from a learner state.

A registered name is a module plus the config fields and hyperparameters it starts from
(``jaxmarl_coop.presets.LEARNER_DEFAULTS``): ``mappo`` and ``ippo`` are one module
(``actor_critic``) with a centralised or a local critic. Adding a learner is one file with
that face and one :func:`register_learner` line at the end of this module.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from types import ModuleType
from typing import Any

from jaxmarl_coop.envs.core import Env
from jaxmarl_coop.envs.policy import Policy
from jaxmarl_coop.learners import actor_critic, dqn, tabular_q, value_decomposition
from jaxmarl_coop.learners.base import Learner, LearnerConfig
from jaxmarl_coop.presets import LEARNER_DEFAULTS

#: what a learner module must define
PROTOCOL = ("Config", "Hyperparams", "make_learner", "make_policy", "policy_params")


@dataclasses.dataclass(frozen=True)
class LearnerSpec:
    """A registered learner: its module and the settings it starts from."""

    name: str
    module: ModuleType
    config_defaults: Mapping[str, Any]
    hp_defaults: Mapping[str, Any]

    @property
    def config_class(self) -> type[LearnerConfig]:
        return self.module.Config

    def config_fields(self) -> tuple[str, ...]:
        """The config fields a user may set (``num_updates`` comes from the env steps)."""
        return tuple(f.name for f in dataclasses.fields(self.config_class))

    def hp_fields(self) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(self.module.Hyperparams))


_LEARNERS: dict[str, LearnerSpec] = {}


def register_learner(name: str, module: ModuleType, config_defaults: Mapping[str, Any] = (),
                     hp_defaults: Mapping[str, Any] = ()) -> LearnerSpec:
    """Register ``module`` (with the learner protocol's face) under ``name``, starting from
    ``config_defaults`` and ``hp_defaults``; ``ValueError`` if the module lacks a part."""
    missing = [part for part in PROTOCOL if not hasattr(module, part)]
    if missing:
        raise ValueError(f"learner module {module.__name__} lacks {', '.join(missing)} of the "
                         f"learner protocol ({', '.join(PROTOCOL)})")
    if not (isinstance(module.Config, type) and issubclass(module.Config, LearnerConfig)):
        raise ValueError(f"{module.__name__}.Config must subclass learners.base.LearnerConfig")
    spec = LearnerSpec(name, module, dict(config_defaults), dict(hp_defaults))
    _check_names(spec, spec.config_defaults, "config field", spec.config_fields())
    _check_names(spec, spec.hp_defaults, "hyperparameter", spec.hp_fields())
    _LEARNERS[name] = spec
    return spec


def learner_names() -> tuple[str, ...]:
    """The registered learner names, in registration order."""
    return tuple(_LEARNERS)


def get_learner(name: str) -> LearnerSpec:
    """The :class:`LearnerSpec` of ``name`` (``ValueError`` naming the registered ones)."""
    if not isinstance(name, str) or name not in _LEARNERS:
        raise ValueError(f"unknown learner {name!r}; choose from {', '.join(_LEARNERS)}")
    return _LEARNERS[name]


def _check_names(spec: LearnerSpec, given: Mapping[str, Any], what: str,
                 valid: tuple[str, ...]) -> None:
    unknown = sorted(set(given) - set(valid))
    if unknown:
        raise ValueError(f"{spec.name} has no {what} {', '.join(unknown)}; valid: "
                         f"{', '.join(sorted(valid))}")


def make_config(name: str, env_steps: int | None = None, **overrides: Any) -> LearnerConfig:
    """The config of learner ``name``: its defaults, then ``overrides``.

    ``env_steps`` (per seed) sets ``num_updates`` to the fewest updates that reach it
    (``ceil(env_steps / (num_envs * rollout_length))``); give it or ``num_updates``, not both.
    """
    spec = get_learner(name)
    _check_names(spec, overrides, "config field", spec.config_fields())
    fields = {**spec.config_defaults, **overrides}
    if env_steps is not None:
        if "num_updates" in overrides:
            raise ValueError(f"{name}: give env_steps or num_updates, not both")
        if isinstance(env_steps, bool) or not isinstance(env_steps, int) or env_steps < 1:
            raise ValueError(f"env_steps must be an integer >= 1, got {env_steps!r}")
        probe = spec.config_class(**fields)
        fields["num_updates"] = math.ceil(env_steps / probe.env_steps_per_update)
    return spec.config_class(**fields)


def make_hyperparams(name: str, config: LearnerConfig | None = None, **overrides: Any) -> Any:
    """The traced hyperparameters of learner ``name``: its defaults, then ``overrides``."""
    spec = get_learner(name)
    _check_names(spec, overrides, "hyperparameter", spec.hp_fields())
    config = config if config is not None else spec.config_class(**spec.config_defaults)
    return config.hyperparams(**{**spec.hp_defaults, **overrides})


def make_learner(name: str | LearnerConfig, env: Env, env_params: Any,
                 **config_overrides: Any) -> tuple[Learner, LearnerConfig]:
    """``(learner, config)``: learner ``name`` (or the learner of ``config``) on ``env``.

    ``config_overrides`` (and ``env_steps``, see :func:`make_config`) apply to a name; a
    config is used as it is.
    """
    if not isinstance(name, (str, LearnerConfig)):
        raise ValueError(f"make_learner takes a learner name ({', '.join(_LEARNERS)}) or a "
                         f"learner config (e.g. registry.make_config('mappo')) first, got "
                         f"{name!r} ({type(name).__name__})")
    if not isinstance(env, Env):
        raise ValueError(f"make_learner needs an env (env, env_params = envs.make('name-vN')), "
                         f"got {env!r} ({type(env).__name__})")
    if isinstance(name, LearnerConfig):
        if config_overrides:
            raise ValueError("make_learner(config, ...) takes no overrides; use "
                             "dataclasses.replace(config, ...)")
        config = name
    else:
        config = make_config(name, **config_overrides)
    return module_of(config).make_learner(config, env, env_params), config


def module_of(config: LearnerConfig) -> ModuleType:
    """The learner module whose ``Config`` ``config`` is."""
    for spec in _LEARNERS.values():
        if type(config) is spec.config_class:
            return spec.module
    raise ValueError(f"no registered learner has config class {type(config).__name__}")


def make_policy(config: LearnerConfig, env: Env, params: Any, greedy: bool = True) -> Policy:
    """The trained team of ``params`` (``policy_params(config, state)``) as a ``Policy``."""
    return module_of(config).make_policy(config, env, params, greedy=greedy)


def policy_params(config: LearnerConfig, state: Any) -> Any:
    """What :func:`make_policy` needs from a learner state of ``config``'s learner."""
    return module_of(config).policy_params(state)


# the built-in learners (their starting settings: jaxmarl_coop.presets.LEARNER_DEFAULTS)
register_learner("mappo", actor_critic, *LEARNER_DEFAULTS["mappo"])
register_learner("ippo", actor_critic, *LEARNER_DEFAULTS["ippo"])
register_learner("maa2c", actor_critic, *LEARNER_DEFAULTS["maa2c"])
register_learner("ia2c", actor_critic, *LEARNER_DEFAULTS["ia2c"])
register_learner("dqn", dqn, *LEARNER_DEFAULTS["dqn"])
register_learner("vdn", value_decomposition, *LEARNER_DEFAULTS["vdn"])
register_learner("qmix", value_decomposition, *LEARNER_DEFAULTS["qmix"])
register_learner("tabular_q", tabular_q, *LEARNER_DEFAULTS["tabular_q"])
