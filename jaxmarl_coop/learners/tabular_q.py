"""Independent tabular Q-learning, the seed's rule, as one pure jitted program.

Each agent ``i`` keeps its own table ``Q_i[s, a]`` (all tables live in one ``(N, S, A)``
array), where ``s = env.obs_index(obs)`` is the agent's integer observation index. After
every env step, for each agent::

    Q_i[s, a] <- Q_i[s, a] + alpha * (r_i + gamma * (1 - terminated) * max_a' Q_i[s', a']
                                      - Q_i[s, a])

with ``s'`` the index of the true next observation (the final one when an episode ends,
so a truncated episode bootstraps from it and a terminated one does not). The max is over
the actions legal at ``s'``; where none is legal it is 0 (nothing to bootstrap from, and
never ``0 * -inf = NaN``). With several
envs stepped at once, the TD errors of transitions that hit the same ``(i, s, a)`` in one
step are averaged before the update (with ``num_envs=1`` this is exactly the rule above).

Hysteretic Q-learning (Matignon, Laurent & Le Fort-Piat 2007) uses a smaller learning rate
for bad news: with ``delta = r_i + gamma ... - Q_i[s, a]`` the update is ``alpha * delta``
when ``delta >= 0`` and ``hysteretic_beta * alpha * delta`` when ``delta < 0``. An
independent learner then discounts the low payoffs it gets when its partner explores, which
helps a team of them find a coordinated optimum (the climbing game). Each transition's TD
error is scaled before the averaging above; ``hysteretic_beta = 1`` (the default) is the
plain rule, bit for bit.
Actions are epsilon-greedy (ties broken at random) with epsilon decaying linearly from
``epsilon_start`` to ``epsilon_end`` over the first ``epsilon_decay_fraction`` of training.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from flax import struct

from jaxmarl_coop.envs.core import Env, TimeStep, check_param, check_param_types
from jaxmarl_coop.envs.policy import Policy, feed_forward
from jaxmarl_coop.learners.base import (
    Learner,
    LearnerConfig,
    batch_env,
    check_probability,
    epsilon_greedy,
    linear_schedule,
    make_train,
    masked_argmax,
)
from jaxmarl_coop.learners.rollout import RolloutState, collect, episode_metrics


@struct.dataclass
class TabularQHyperparams:
    """Traced hyperparameters: vmap over them to sweep."""

    alpha: float = 0.1
    gamma: float = 0.9
    epsilon_start: float = 1.0
    epsilon_end: float = 0.05
    epsilon_decay_fraction: float = 0.5
    q_init: float = 0.0
    hysteretic_beta: float = 1.0  # learning-rate factor for negative TD errors, in (0, 1]

    def __post_init__(self) -> None:
        check_param_types(self)
        check_param("alpha", self.alpha, low=0.0, high=1.0, low_inclusive=False)
        check_probability("gamma", self.gamma)
        check_probability("epsilon_start", self.epsilon_start)
        check_probability("epsilon_end", self.epsilon_end)
        check_param("epsilon_decay_fraction", self.epsilon_decay_fraction, low=0.0, high=1.0,
                    low_inclusive=False)
        check_param("q_init", self.q_init)
        check_param("hysteretic_beta", self.hysteretic_beta, low=0.0, high=1.0,
                    low_inclusive=False)


@dataclasses.dataclass(frozen=True)
class TabularQConfig(LearnerConfig):
    """Static shape of a run: sizes and counts (changing one recompiles)."""

    num_envs: int = 16
    rollout_length: int = 25  # env steps per update
    num_updates: int = 200

    Hyperparams: ClassVar[type] = TabularQHyperparams

    def hyperparams(self, **overrides: Any) -> TabularQHyperparams:
        return TabularQHyperparams(**overrides)


@struct.dataclass
class TabularQState:
    q: jax.Array  # (N, S, A)
    rollout: RolloutState
    key: jax.Array
    update_step: jax.Array  # () int32
    hp: TabularQHyperparams


def make_learner(config: TabularQConfig, env: Env, env_params: Any) -> Learner:
    """Independent tabular Q-learning on ``env`` (which must define ``obs_index``)."""
    num_states = getattr(env, "num_obs_indices", None)
    if not num_states:
        raise ValueError(f"{env.name or type(env).__name__} has no integer observation index "
                         "(num_obs_indices); tabular Q-learning needs a discrete-state task")
    if env.continuous_actions:
        raise ValueError(f"{env.name}: tabular Q-learning needs discrete actions")
    n, a = env.num_agents, env.num_actions
    venv = batch_env(env, config.num_envs)
    agents = jnp.arange(n)
    total_steps = config.num_updates * config.rollout_length

    def init(key: jax.Array, hp: TabularQHyperparams) -> TabularQState:
        k_env, key = jax.random.split(key)
        env_state, ts = venv.reset(k_env, env_params)
        q = jnp.full((n, num_states, a), hp.q_init, jnp.float32)
        return TabularQState(q, RolloutState(env_state, ts), key,
                             jnp.zeros((), jnp.int32), hp)

    def step(carry: tuple[TabularQState, jax.Array], key: jax.Array):
        state, t = carry
        hp = state.hp
        epsilon = linear_schedule(hp.epsilon_start, hp.epsilon_end, hp.epsilon_decay_fraction,
                                  t / total_steps)

        def policy(key: jax.Array, ts: TimeStep):
            s = env.obs_index(ts.obs)  # (B, N)
            return epsilon_greedy(key, state.q[agents, s], ts.action_mask, epsilon), {}

        rollout, tr, info = collect(venv, env_params, policy, state.rollout, key, 1)
        tr = jax.tree.map(lambda x: x[0], tr)
        q = q_update(state.q, env.obs_index(tr.obs), tr.action, tr.reward, tr.terminated,
                     env.obs_index(tr.next_obs), tr.next_action_mask, hp.alpha, hp.gamma,
                     hp.hysteretic_beta)
        td = q - state.q
        info = jax.tree.map(lambda x: x[0], info)
        return (state.replace(q=q, rollout=rollout), t + 1), (info, jnp.sum(jnp.abs(td)),
                                                              epsilon)

    def update(state: TabularQState) -> tuple[TabularQState, dict[str, jax.Array]]:
        key, k_run = jax.random.split(state.key)
        t0 = state.update_step * config.rollout_length
        (state, _), (info, td, epsilon) = jax.lax.scan(
            step, (state, t0), jax.random.split(k_run, config.rollout_length))
        metrics = episode_metrics(info)
        metrics.update(q_change=jnp.mean(td), epsilon=epsilon[-1],  # float32: no int32 wrap
                       env_steps=(state.update_step + 1).astype(jnp.float32)
                       * (config.rollout_length * config.num_envs))
        return state.replace(key=key, update_step=state.update_step + 1), metrics

    return Learner(init, update, make_train(init, update, config.num_updates))


def q_update(q: jax.Array, s: jax.Array, a: jax.Array, r: jax.Array, terminated: jax.Array,
             s_next: jax.Array, next_mask: jax.Array, alpha: jax.Array | float,
             gamma: jax.Array | float, beta: jax.Array | float = 1.0) -> jax.Array:
    """One batch of the seed's update on tables ``q`` ``(N, S, A)``.

    ``s, a, r, s_next``: ``(B, N)``; ``terminated``: ``(B,)``; ``next_mask``: ``(B, N, A)``
    legal actions at ``s_next`` (the max over an empty set is 0). Negative TD errors are
    scaled by ``beta`` (hysteretic Q-learning; 1 is the plain rule), then TD errors that hit
    the same ``(agent, s, a)`` are averaged.
    """
    n, num_states, num_actions = q.shape
    agents = jnp.arange(n)
    next_q = jnp.where(next_mask, q[agents, s_next], -jnp.inf)
    # no legal action at s': nothing to bootstrap from (0, not max(-inf) -> -inf or NaN)
    best_next = jnp.where(jnp.any(next_mask, axis=-1), jnp.max(next_q, axis=-1), 0.0)
    not_terminal = 1.0 - terminated.astype(jnp.float32)[:, None]
    target = r + gamma * not_terminal * best_next
    td = target - q[agents, s, a]  # (B, N)
    td = jnp.where(td < 0.0, beta * td, td)
    flat = ((agents * num_states + s) * num_actions + a).reshape(-1)
    td_sum = jnp.zeros(q.size, q.dtype).at[flat].add(td.reshape(-1))
    hits = jnp.zeros(q.size, q.dtype).at[flat].add(1.0)
    return q + (alpha * td_sum / jnp.maximum(hits, 1.0)).reshape(q.shape)


def make_policy(config: TabularQConfig, env: Env, params: jax.Array, greedy: bool = True,
                epsilon: float = 0.05) -> Policy:
    """The learned tables ``params`` ``(N, S, A)`` (as ``policy_params`` gives them) as a
    ``Policy``: greedy (ties broken at random), or epsilon-greedy when ``greedy`` is False."""
    agents = jnp.arange(env.num_agents)

    def act(key: jax.Array, ts: TimeStep) -> jax.Array:
        q = params[agents, env.obs_index(ts.obs)]
        if greedy:
            return masked_argmax(key, q, ts.action_mask).astype(jnp.int32)
        return epsilon_greedy(key, q, ts.action_mask, jnp.asarray(epsilon, jnp.float32))

    return feed_forward(act, name="tabular_q")


def policy_params(state: TabularQState) -> jax.Array:
    """What ``make_policy`` needs from a learner state: the Q tables."""
    return state.q


Config = TabularQConfig
Hyperparams = TabularQHyperparams
