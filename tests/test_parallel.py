"""jaxmarl_coop.parallel: a grid sharded over 4 fake CPU devices equals one device."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jaxmarl_coop import parallel

REPO = Path(__file__).resolve().parents[1]

#: runs in a child process, whose XLA_FLAGS fake 4 CPU devices before JAX starts
SHARDED_PROGRAM = """
from jaxmarl_coop.runtime import configure_xla

configure_xla()

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from jaxmarl_coop import parallel
from jaxmarl_coop.envs import make
from jaxmarl_coop.learners import tabular_q
from jaxmarl_coop.learners.base import stack_hyperparams


def raises(fn, *needles):
    try:
        fn()
    except ValueError as err:
        assert all(n in str(err) for n in needles), str(err)
        return
    raise AssertionError(f"no ValueError, expected {needles}")


assert jax.local_device_count() == 4
mesh = parallel.seed_mesh(4)
assert mesh.axis_names == (parallel.AXIS,) and mesh.size == 4
assert parallel.seed_mesh().size == 4 and parallel.seed_mesh(2).size == 2
raises(lambda: parallel.seed_mesh(5), "5 devices requested", "only 4 local device(s) (cpu)")
raises(lambda: parallel.seed_mesh(0), "devices must be an integer >= 1, got 0")
raises(lambda: parallel.shard_leading({"w": jnp.zeros((6, 3))}, mesh), "(6, 3)",
       "does not divide over 4 devices")
raises(lambda: parallel.run_grid(lambda k, h: h, jnp.zeros((0, 2), jnp.uint32),
                                 jnp.zeros((0,))), "length 0")
raises(lambda: parallel.run_grid(lambda k, h: h, jnp.zeros((4, 2), jnp.uint32),
                                 jnp.zeros((3,))), "same leading")

env, env_params = make("climbing-v1")
config = tabular_q.TabularQConfig(num_envs=4, rollout_length=5, num_updates=8)
learner = tabular_q.make_learner(config, env, env_params)
for size in (4, 6):  # 6 does not divide over 4 devices: padded to 8, then trimmed
    values, labels = parallel.grid(seeds=size // 2, alpha=[0.1, 0.5])
    keys = jax.random.split(jax.random.PRNGKey(0), size // 2)[labels["seed"]]
    hps = stack_hyperparams(config.hyperparams(alpha=jnp.asarray(values["alpha"],
                                                                 jnp.float32)), size)
    sharded = parallel.run_grid(learner.train, keys, hps, mesh)
    alone = jax.jit(jax.vmap(learner.train))(keys, hps)
    spec = PartitionSpec(parallel.AXIS) if size == 4 else PartitionSpec()
    for got, want in zip(jax.tree.leaves(sharded), jax.tree.leaves(alone), strict=True):
        assert got.shape == want.shape, (size, got.shape, want.shape)
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6, atol=1e-6)
        assert isinstance(got.sharding, NamedSharding), got.sharding
        assert got.sharding.mesh == mesh and got.sharding.spec == spec, got.sharding
        assert len(got.sharding.device_set) == 4
    assert np.ptp(np.asarray(sharded[0].q).reshape(size, -1).sum(axis=1)) > 0  # lanes differ

# any fn of (key, hp), new-style keys, 3 points over a 2-device mesh (padded to 4)
small = parallel.seed_mesh(2)
keys = jax.random.split(jax.random.key(1), 3)
hps = {"scale": jnp.array([1.0, 2.0, 3.0])}
fn = lambda k, h: {"x": jax.random.normal(k, (5,)) * h["scale"], "s": h["scale"] * 2}
got = parallel.run_grid(fn, keys, hps, small)
want = jax.jit(jax.vmap(fn))(keys, hps)
np.testing.assert_allclose(np.asarray(got["x"]), np.asarray(want["x"]), rtol=1e-6)
np.testing.assert_array_equal(np.asarray(got["s"]), [2.0, 4.0, 6.0])
assert got["x"].sharding.mesh == small and got["x"].shape == (3, 5)
print("PARALLEL_OK")
"""


@pytest.mark.slow  # a subprocess with four devices: in the full suite only
def test_a_grid_sharded_over_four_devices_matches_one_device():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
           "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", SHARDED_PROGRAM], cwd=REPO,
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "PARALLEL_OK" in proc.stdout


def test_grid_is_the_cartesian_product_repeated_over_seeds():
    values, labels = parallel.grid(seeds=2, lr=[1e-3, 3e-3], ent_coef=[0.0, 0.01, 0.1])
    assert set(values) == {"lr", "ent_coef"} and len(values["lr"]) == 12
    np.testing.assert_array_equal(labels["point"], np.repeat(np.arange(6), 2))
    np.testing.assert_array_equal(labels["seed"], np.tile([0, 1], 6))
    np.testing.assert_allclose(values["lr"][::2], [1e-3] * 3 + [3e-3] * 3)
    np.testing.assert_allclose(values["ent_coef"][::2], [0.0, 0.01, 0.1] * 2)
    points = {(values["lr"][i], values["ent_coef"][i]) for i in range(12)}
    assert len(points) == 6


@pytest.mark.parametrize(("kwargs", "expected"), [
    ({"lr": [0.1], "ent_coef": []}, "grid axis 'ent_coef' has no values"),
    ({"seeds": 0, "lr": [0.1]}, "seeds must be an integer >= 1"),
    ({"lr": [[0.1, 0.2]]}, "grid axis 'lr' must be a flat list"),
])
def test_grid_rejects_an_empty_axis_and_no_seeds(kwargs, expected):
    with pytest.raises(ValueError, match=expected):
        parallel.grid(**kwargs)


def test_train_refuses_more_devices_than_exist_in_one_line():
    proc = subprocess.run([sys.executable, "-m", "experiments.train", "--seeds", "8",
                           "--devices", "8", "--learner", "tabular_q", "--env", "climbing-v1"],
                          cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert proc.returncode == 2
    assert "error: --devices 8: 8 devices requested but only" in proc.stderr
    assert "local device(s) (cpu) are available" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
