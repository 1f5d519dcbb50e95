"""Spaces that describe, sample and validate the arrays an environment exchanges.

A space describes a whole array, agent axis included: the joint action space of a
three-agent discrete task is ``Discrete(5, shape=(3,))``. Both methods are pure and
jittable: ``sample(key)`` draws a value, ``contains(x)`` returns a scalar bool array.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np


@dataclass(frozen=True)
class Discrete:
    """Integers in ``[0, n)`` of the given shape (one per agent for a joint action)."""

    n: int
    shape: tuple[int, ...] = ()
    dtype: np.dtype = np.int32  # normalised to np.dtype

    def __post_init__(self) -> None:
        if int(self.n) < 1:
            raise ValueError(f"Discrete space needs n >= 1, got n={self.n!r}")
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        object.__setattr__(self, "dtype", np.dtype(self.dtype))

    def sample(self, key: jax.Array, mask: jax.Array | None = None) -> jax.Array:
        """A uniform draw; with a bool ``mask`` of shape ``shape + (n,)``, only legal values."""
        if mask is None:
            return jax.random.randint(key, self.shape, 0, self.n, dtype=self.dtype)
        logits = jnp.where(mask, 0.0, -jnp.inf)
        return jax.random.categorical(key, logits, axis=-1).astype(self.dtype)

    def contains(self, x: jax.Array) -> jax.Array:
        x = jnp.asarray(x)
        if x.shape != self.shape or not jnp.issubdtype(x.dtype, jnp.integer):
            return jnp.asarray(False)
        return jnp.all((x >= 0) & (x < self.n))


@dataclass(frozen=True)
class Box:
    """Reals in ``[low, high]`` (bounds broadcast to ``shape``); NaN is never contained."""

    low: float
    high: float
    shape: tuple[int, ...]
    dtype: np.dtype = np.float32  # normalised to np.dtype

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        object.__setattr__(self, "dtype", np.dtype(self.dtype))
        if np.any(np.asarray(self.low) > np.asarray(self.high)):
            raise ValueError(f"Box needs low <= high, got low={self.low!r}, high={self.high!r}")

    def sample(self, key: jax.Array) -> jax.Array:
        """Uniform inside finite bounds; a standard normal on an unbounded side."""
        low = jnp.broadcast_to(jnp.asarray(self.low, self.dtype), self.shape)
        high = jnp.broadcast_to(jnp.asarray(self.high, self.dtype), self.shape)
        k_u, k_n = jax.random.split(key)
        uniform = jax.random.uniform(k_u, self.shape, self.dtype, 0.0, 1.0)
        normal = jax.random.normal(k_n, self.shape, self.dtype)
        finite = jnp.isfinite(low) & jnp.isfinite(high)
        bounded = low + uniform * (high - low)
        lower_only = low + jnp.abs(normal)
        upper_only = high - jnp.abs(normal)
        return jnp.where(
            finite,
            bounded,
            jnp.where(
                jnp.isfinite(low), lower_only, jnp.where(jnp.isfinite(high), upper_only, normal)
            ),
        )

    def contains(self, x: jax.Array) -> jax.Array:
        x = jnp.asarray(x)
        if x.shape != self.shape or x.dtype != self.dtype:
            return jnp.asarray(False)
        return jnp.all((x >= self.low) & (x <= self.high))


Space = Discrete | Box
