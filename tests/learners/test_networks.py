"""The LAPACK-free orthogonal initialiser used by every network."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmarl_coop.learners.networks import orthogonal


@pytest.mark.parametrize("shape", [(54, 64), (64, 64), (64, 5), (3, 7, 4), (128, 128)])
def test_orthogonal_equals_flax_from_the_same_key(shape):
    key = jax.random.PRNGKey(7)
    ours = orthogonal(np.sqrt(2.0))(key, shape)
    theirs = nn.initializers.orthogonal(np.sqrt(2.0))(key, shape)
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_orthogonal_columns_are_orthonormal_and_scaled():
    w = orthogonal(0.5)(jax.random.PRNGKey(0), (32, 8))
    np.testing.assert_allclose(w.T @ w, 0.25 * jnp.eye(8), atol=1e-5)
    wide = orthogonal(1.0)(jax.random.PRNGKey(1), (8, 32))
    np.testing.assert_allclose(wide @ wide.T, jnp.eye(8), atol=1e-5)


def test_orthogonal_rejects_a_vector():
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        orthogonal()(jax.random.PRNGKey(0), (5,))
