"""What every learner shares: the ``Learner`` triple, schedules, config checks, env batch.

A learner is ``init(key, hp) -> state``, ``update(state) -> (state, metrics)`` and
``train(key, hp) -> (state, metrics)`` (``init`` then ``lax.scan`` of ``update``). ``hp`` is
a pytree of floats, so ``jax.jit(jax.vmap(train))(keys, hps)`` runs many seeds and
hyperparameter settings as one program. Metrics are per update, never per env step.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxmarl_coop.envs.core import Env, check_count, check_flag, check_param
from jaxmarl_coop.envs.wrappers import VecEnv, wrap


@dataclasses.dataclass(frozen=True)
class LearnerConfig:
    """What every learner's config states: the static shape of a run (changing a field
    recompiles). A learner module's ``Config`` subclasses it (redeclaring the defaults it
    wants) and names its traced hyperparameters' class in ``Hyperparams``.

    ``num_envs`` envs step ``rollout_length`` times per update, for ``num_updates`` updates:
    ``total_env_steps = num_envs * rollout_length * num_updates`` per seed.
    """

    num_envs: int = 16
    rollout_length: int = 128
    num_updates: int = 200
    #: the traced hyperparameters' class (a ``flax.struct`` dataclass of floats)
    Hyperparams: ClassVar[type] = type(None)

    def __post_init__(self) -> None:
        check_counts(self, "num_envs", "rollout_length", "num_updates")
        check_config_types(self)

    @property
    def env_steps_per_update(self) -> int:
        """Env steps per update, over all of a seed's envs."""
        return self.num_envs * self.rollout_length

    @property
    def total_env_steps(self) -> int:
        """Env steps per seed over the whole run."""
        return self.env_steps_per_update * self.num_updates

    def hyperparams(self, **overrides: Any) -> Any:
        """The traced hyperparameters (``Hyperparams``'s defaults, then ``overrides``)."""
        return self.Hyperparams(**overrides)


class Learner(NamedTuple):
    init: Callable[[jax.Array, Any], Any]
    update: Callable[[Any], tuple[Any, dict[str, jax.Array]]]
    train: Callable[[jax.Array, Any], tuple[Any, dict[str, jax.Array]]]


def make_train(init: Callable[[jax.Array, Any], Any],
               update: Callable[[Any], tuple[Any, dict[str, jax.Array]]],
               num_updates: int) -> Callable[[jax.Array, Any], tuple[Any, dict[str, jax.Array]]]:
    """``train(key, hp)``: ``init`` then ``num_updates`` updates in one ``lax.scan``."""

    def train(key: jax.Array, hp: Any) -> tuple[Any, dict[str, jax.Array]]:
        state = init(key, hp)
        return jax.lax.scan(lambda s, _: update(s), state, None, length=num_updates)

    return train


def linear_schedule(start: jax.Array, end: jax.Array, fraction: jax.Array,
                    progress: jax.Array) -> jax.Array:
    """Linear from ``start`` to ``end`` over the first ``fraction`` of training, then flat.

    ``progress`` is the fraction of training done, in [0, 1].
    """
    ramp = jnp.clip(progress / jnp.maximum(fraction, 1e-8), 0.0, 1.0)
    return start + (end - start) * ramp


def batch_env(env: Env, num_envs: int, agent_id: bool = False) -> VecEnv:
    """``num_envs`` auto-resetting envs with episode statistics, stepped as one."""
    return VecEnv(wrap(env, agent_id=agent_id), num_envs)


def check_counts(config: Any, *names: str, minimum: int = 1) -> None:
    """``ValueError`` naming any config count that is not an int ``>= minimum``."""
    for name in names:
        check_count(f"{type(config).__name__}.{name}", getattr(config, name), minimum)


def check_config_types(config: Any) -> None:
    """Type checks of a config's fields, by annotation: a ``bool`` field takes a real bool
    (not ``"yes"`` or 0); a ``tuple[int, ...]`` field (layer widths such as ``hidden``)
    takes a tuple or list of ints >= 1, or one int for a single layer (stored as a tuple)."""
    cls = type(config)
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # an annotation that does not resolve: read the simple ones only
        names = {"bool": bool, "tuple[int, ...]": tuple[int, ...]}
        hints = {f.name: names.get(f.type, f.type) if isinstance(f.type, str) else f.type
                 for f in dataclasses.fields(cls)}
    for name, hint in hints.items():
        if name not in {f.name for f in dataclasses.fields(cls)}:
            continue
        label = f"{cls.__name__}.{name}"
        value = getattr(config, name)
        if hint is bool:
            check_flag(label, value)
        elif hint == tuple[int, ...]:
            object.__setattr__(config, name, layer_widths(label, value))


def layer_widths(name: str, value: Any) -> tuple[int, ...]:
    """``64`` -> ``(64,)``; ``[64, 64]`` -> ``(64, 64)``; anything else but positive ints is
    a ``ValueError`` naming ``name``."""
    widths = (value,) if isinstance(value, (int, np.integer)) else value
    if (not isinstance(widths, (tuple, list)) or not widths
            or any(isinstance(w, bool) or not isinstance(w, (int, np.integer)) or w < 1
                   for w in widths)):
        raise ValueError(f"{name} must be layer widths: a tuple of ints >= 1 such as (64, 64), "
                         f"or one int for one layer, got {value!r}")
    return tuple(int(w) for w in widths)


def check_probability(name: str, value: Any) -> None:
    check_param(name, value, low=0.0, high=1.0)


def masked_argmax(key: jax.Array, values: jax.Array, mask: jax.Array) -> jax.Array:
    """Argmax over the last axis among legal entries, ties broken uniformly at random."""
    values = jnp.where(mask, values, -jnp.inf)
    best = values >= jnp.max(values, axis=-1, keepdims=True)
    return jax.random.categorical(key, jnp.where(best & mask, 0.0, -jnp.inf), axis=-1)


def epsilon_greedy(key: jax.Array, values: jax.Array, mask: jax.Array,
                   epsilon: jax.Array) -> jax.Array:
    """With probability ``epsilon`` a uniform legal action, else a greedy one; ``(..., A)``."""
    k_explore, k_random, k_greedy = jax.random.split(key, 3)
    greedy = masked_argmax(k_greedy, values, mask)
    random = jax.random.categorical(k_random, jnp.where(mask, 0.0, -jnp.inf), axis=-1)
    explore = jax.random.uniform(k_explore, greedy.shape) < epsilon
    return jnp.where(explore, random, greedy).astype(jnp.int32)


def stack_hyperparams(hp: Any, num: int) -> Any:
    """Give every leaf of ``hp`` a leading axis of length ``num`` for ``vmap``.

    Scalars are repeated; leaves that already have a leading axis of ``num`` (the ones
    being swept) are kept. ``jax.vmap(train)(keys, stack_hyperparams(hp, len(keys)))``.
    """

    def lift(x: Any) -> jax.Array:
        x = jnp.asarray(x)
        if x.ndim >= 1 and x.shape[0] == num:
            return x
        if x.ndim != 0:
            raise ValueError(f"hyperparameter of shape {x.shape} cannot be stacked to {num}")
        return jnp.broadcast_to(x, (num,))

    return jax.tree.map(lift, hp)
