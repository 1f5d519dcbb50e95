"""The one policy form: ``policy(key, timestep, carry) -> (actions, carry)``.

Everything that acts in an env has this face: reference scripts, the random policy, and the
trained teams of every learner (``make_policy(config, env, params)``). ``carry`` is what the
policy remembers between steps: nothing (``()``) for a feed-forward policy, a hidden state for
a recurrent one. ``policy.initial_carry(batch)`` gives the carry at an episode start, for one
env (``batch=None``) or for a leading batch of ``batch`` envs; whoever steps the env resets a
carry at every episode start (terminated or truncated) with :func:`reset_carry`.

Acting on a batch of envs is ``jax.vmap(policy)(keys, timesteps, carries)`` with
``initial_carry(None)`` per env, or a policy that acts on batched timesteps directly. Every
function here is pure and jittable; a ``Policy`` is a static Python object (closing over
parameters), not a pytree.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jaxmarl_coop.envs.core import TimeStep

#: ``act(key, timestep, carry) -> (actions, carry)``
ActFn = Callable[[jax.Array, TimeStep, Any], tuple[jax.Array, Any]]


def _no_carry(batch: int | None = None) -> tuple[()]:
    return ()


class Policy:
    """``policy(key, timestep, carry) -> (actions, carry)`` with ``initial_carry(batch)``.

    ``act`` does the acting; ``initial_carry(batch)`` returns the carry at an episode start
    (default: ``()``, a feed-forward policy). ``recurrent`` says whether the carry is used.
    """

    def __init__(self, act: ActFn, initial_carry: Callable[[int | None], Any] | None = None,
                 name: str = "") -> None:
        if not callable(act):
            raise TypeError(f"Policy needs a callable act(key, timestep, carry), got {act!r}")
        self._act = act
        self._initial_carry = initial_carry or _no_carry
        self.recurrent = initial_carry is not None
        self.name = name

    def __call__(self, key: jax.Array, timestep: TimeStep, carry: Any = ()
                 ) -> tuple[jax.Array, Any]:
        return self._act(key, timestep, carry)

    def initial_carry(self, batch: int | None = None) -> Any:
        """The carry at an episode start: for one env, or for ``batch`` envs (leading axis)."""
        return self._initial_carry(batch)

    def __repr__(self) -> str:
        kind = "recurrent" if self.recurrent else "feed-forward"
        return f"Policy({self.name or self._act.__name__!s}, {kind})"


def feed_forward(act: Callable[[jax.Array, TimeStep], jax.Array], name: str = "") -> Policy:
    """A policy that remembers nothing, from ``act(key, timestep) -> actions``."""

    def with_carry(key: jax.Array, timestep: TimeStep, carry: Any) -> tuple[jax.Array, Any]:
        return act(key, timestep), carry

    return Policy(with_carry, name=name or getattr(act, "__name__", ""))


def check_policy(policy: Any, where: str) -> Policy:
    """``policy`` if it is a :class:`Policy`, else a ``TypeError`` saying how to make one."""
    if not isinstance(policy, Policy):
        raise TypeError(f"{where} needs a jaxmarl_coop Policy (policy(key, timestep, carry) -> "
                        f"(actions, carry)), got {policy!r}; wrap a plain "
                        "fn(key, timestep) -> actions with envs.feed_forward(fn)")
    return policy


def reset_carry(policy: Policy, carry: Any, episode_start: jax.Array) -> Any:
    """``carry`` with the entries of envs where ``episode_start`` is True set to the
    policy's initial carry. ``episode_start`` is ``()`` for one env or ``(B,)`` for a batch
    whose carry has that leading axis. A feed-forward policy's ``()`` passes through."""
    if not jax.tree.leaves(carry):
        return carry
    start = jnp.asarray(episode_start, bool)
    fresh = policy.initial_carry(None if start.ndim == 0 else start.shape[0])

    def pick(new: jax.Array, old: jax.Array) -> jax.Array:
        where = start.reshape(start.shape + (1,) * (old.ndim - start.ndim))
        return jnp.where(where, new, old)

    return jax.tree.map(pick, fresh, carry)
