"""The one policy form (``envs.policy``): feed-forward wrapping, carry resets at episode
starts, and ``evaluate`` refusing a plain function and resetting a recurrent policy's carry."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct

from jaxmarl_coop.envs import AutoReset, Policy, feed_forward, make, reset_carry
from jaxmarl_coop.envs.core import Env, TimeStep
from jaxmarl_coop.learners.evaluation import evaluate

NUM_ACTIONS = 8


@struct.dataclass
class ClockParams:
    max_steps: int = 4


@struct.dataclass
class ClockState:
    t: jax.Array  # steps since the episode began


class Clock(Env[ClockState, ClockParams]):
    """A deterministic toy: both agents see ``t``, the steps since the episode began, and
    earn 1 for playing action ``t`` (so a policy must count the steps to score)."""

    def __init__(self) -> None:
        self.num_agents, self.num_actions, self.obs_dim, self.state_dim = 2, NUM_ACTIONS, 1, 1
        self.agent_names = ("agent_0", "agent_1")
        self.teams = {"agents": (0, 1)}

    def default_params(self) -> ClockParams:
        return ClockParams()

    def _timestep(self, t: jax.Array, reward: jax.Array, params: ClockParams) -> TimeStep:
        obs = jnp.full((2, 1), t, jnp.float32)
        return TimeStep(obs, self.all_legal_mask(), obs[0], reward, jnp.zeros((), bool),
                        t >= params.max_steps, {"hits": jnp.sum(reward)})

    def reset_env(self, key: jax.Array, params: ClockParams) -> tuple[ClockState, TimeStep]:
        t = jnp.zeros((), jnp.int32)
        return ClockState(t), self._timestep(t, jnp.zeros(2, jnp.float32), params)

    def step_env(self, key: jax.Array, state: ClockState, actions: jax.Array,
                 params: ClockParams) -> tuple[ClockState, TimeStep]:
        reward = (actions == state.t).astype(jnp.float32)
        t = state.t + 1
        return ClockState(t), self._timestep(t, reward, params)


def counter_policy(on_act=None) -> Policy:
    """A recurrent toy: its carry counts the steps since the episode began (``steps``, shape
    ``()`` or ``(B,)``) next to a ``(3,)``/``(B, 3)`` memory; it plays ``steps``."""

    def initial_carry(batch):
        lead = () if batch is None else (batch,)
        return {"steps": jnp.zeros(lead, jnp.int32), "memory": jnp.full((*lead, 3), -1.0)}

    def act(key, ts, carry):
        steps = carry["steps"]
        if on_act is not None:
            jax.debug.callback(on_act, ts.obs[..., 0, 0], steps)
        actions = jnp.broadcast_to(jnp.minimum(steps, NUM_ACTIONS - 1)[..., None],
                                   ts.obs.shape[:-1]).astype(jnp.int32)
        return actions, {"steps": steps + 1, "memory": carry["memory"] + 1.0}

    return Policy(act, initial_carry, name="counter")


def test_feed_forward_passes_the_carry_through():
    env, params = make("spread-v3")
    _, ts = env.reset(jax.random.PRNGKey(0), params)

    def fixed(key, ts):
        return jnp.array([1, 2, 4], jnp.int32)

    policy = feed_forward(fixed)
    assert isinstance(policy, Policy) and not policy.recurrent
    assert policy.name == "fixed" and "feed-forward" in repr(policy)
    assert policy.initial_carry() == () and policy.initial_carry(5) == ()
    carry = {"h": jnp.arange(3.0), "n": jnp.ones((2, 2), jnp.int32)}
    actions, out = policy(jax.random.PRNGKey(1), ts, carry)
    assert out is carry
    np.testing.assert_array_equal(np.asarray(actions), [1, 2, 4])
    actions, out = jax.jit(policy)(jax.random.PRNGKey(1), ts, carry)
    np.testing.assert_array_equal(np.asarray(actions), [1, 2, 4])
    for got, want in zip(jax.tree.leaves(out), jax.tree.leaves(carry), strict=True):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    assert policy(jax.random.PRNGKey(1), ts, ())[1] == ()
    assert feed_forward(fixed, name="mine").name == "mine"
    with pytest.raises(TypeError, match="callable"):
        Policy("not a function")


def test_reset_carry_resets_exactly_the_envs_whose_episode_starts():
    policy = counter_policy()
    assert policy.recurrent and "recurrent" in repr(policy)
    carry = {"steps": jnp.array([5, 6, 7, 8], jnp.int32),
             "memory": jnp.arange(12.0).reshape(4, 3)}
    start = jnp.array([True, False, False, True])
    for reset in (reset_carry, jax.jit(reset_carry, static_argnums=0)):
        out = reset(policy, carry, start)
        np.testing.assert_array_equal(np.asarray(out["steps"]), [0, 6, 7, 0])
        np.testing.assert_array_equal(np.asarray(out["memory"]),
                                      [[-1.0] * 3, [3.0, 4.0, 5.0], [6.0, 7.0, 8.0], [-1.0] * 3])
        assert out["steps"].dtype == jnp.int32 and out["memory"].shape == (4, 3)
    none = reset_carry(policy, carry, jnp.zeros(4, bool))
    for got, want in zip(jax.tree.leaves(none), jax.tree.leaves(carry), strict=True):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    every = reset_carry(policy, carry, jnp.ones(4, bool))
    for got, want in zip(jax.tree.leaves(every), jax.tree.leaves(policy.initial_carry(4)),
                         strict=True):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))

    # one env: a scalar episode start
    one = {"steps": jnp.array(3, jnp.int32), "memory": jnp.array([1.0, 2.0, 3.0])}
    kept = reset_carry(policy, one, jnp.array(False))
    np.testing.assert_array_equal(np.asarray(kept["steps"]), 3)
    np.testing.assert_array_equal(np.asarray(kept["memory"]), [1.0, 2.0, 3.0])
    fresh = reset_carry(policy, one, jnp.array(True))
    np.testing.assert_array_equal(np.asarray(fresh["steps"]), 0)
    np.testing.assert_array_equal(np.asarray(fresh["memory"]), [-1.0] * 3)
    assert fresh["steps"].shape == () and fresh["memory"].shape == (3,)

    # a feed-forward policy's () passes through, batched or not
    ff = feed_forward(lambda key, ts: ts.obs)
    assert reset_carry(ff, (), jnp.array([True, False])) == ()
    assert reset_carry(ff, (), jnp.array(True)) == ()


def test_evaluate_needs_a_policy_and_names_feed_forward():
    env, params = make("spread-v3", max_steps=3)

    def plain(key, ts):
        return jnp.zeros(3, jnp.int32)

    with pytest.raises(TypeError, match=r"evaluate needs .*envs\.feed_forward\(fn\)"):
        evaluate(env, params, plain, jax.random.PRNGKey(0), 2)
    out = evaluate(env, params, feed_forward(plain), jax.random.PRNGKey(0), 2)
    np.testing.assert_array_equal(np.asarray(out["length"]), [3, 3])


def test_evaluate_resets_a_recurrent_carry_at_every_episode_start():
    env, params = Clock(), ClockParams(max_steps=4)
    seen = []  # (t the env shows, steps the carry counted) at every act, every episode

    def record(t, steps):
        seen.append(np.stack([np.ravel(t), np.ravel(steps)], axis=-1))

    # 10 scan steps: episodes start at steps 0, 4 and 8 of the scan (one env: the toy is
    # deterministic, so the envs of a batch would be one unbatched callback anyway)
    out = jax.jit(lambda k: evaluate(env, params, counter_policy(record), k, num_episodes=1,
                                     max_steps=10))(jax.random.PRNGKey(0))
    jax.effects_barrier()
    # the first episode: the carry starts at initial_carry, so every step scores for both
    np.testing.assert_array_equal(np.asarray(out["length"]), [4])
    np.testing.assert_array_equal(np.asarray(out["return"]), [8.0])
    np.testing.assert_array_equal(np.asarray(out["hits"]), [2.0])
    assert np.all(np.asarray(out["completed"]))
    # every later episode too: the carry was reset whenever the env auto-reset
    pairs = np.concatenate(seen).astype(int)
    assert pairs.shape == (10, 2)
    np.testing.assert_array_equal(pairs[:, 1], pairs[:, 0])
    assert sorted(pairs[:, 0].tolist()) == sorted([0, 1, 2, 3, 0, 1, 2, 3, 0, 1])

    # without the resets the counter runs on past the first episode and stops scoring
    def no_reset(key):
        policy, venv = counter_policy(), AutoReset(env)
        state, ts = venv.reset(key, params)

        def body(carry, key):
            state, ts, memory = carry
            actions, memory = policy(key, ts, memory)
            state, ts = venv.step(key, state, actions, params)
            return (state, ts, memory), ts.reward.sum()

        return jax.lax.scan(body, (state, ts, policy.initial_carry()),
                            jax.random.split(key, 8))[1].sum()

    assert float(jax.jit(no_reset)(jax.random.PRNGKey(0))) == 8.0  # the second episode: 0
