"""Actor-critic with a centralised or local critic: MAPPO, MAA2C, IPPO and IA2C.

One learner, four variants by configuration:

- ``algorithm="ppo"``: the clipped surrogate, ``num_epochs`` passes over the rollout in
  ``num_minibatches`` shuffled minibatches; ``algorithm="a2c"``: the seed's rule
  ``theta <- theta + lr * grad log pi(a|s) A(s, a)``, one gradient step on the whole rollout.
- ``critic="centralised"``: each agent's value is ``V(global_state, agent id)`` (MAPPO,
  MAA2C); ``critic="local"``: ``V(own observation)`` (IPPO, IA2C).

Advantages are GAE (``returns.gae``) with terminated and truncated ends apart: a truncated
episode bootstraps from the value of its true final state. Policies are ``distrax``
distributions: a categorical over the legal actions (illegal ones get probability 0), or for
continuous actions a diagonal Gaussian squashed into [0, 1] by ``(tanh(u) + 1) / 2``
(``policy="gaussian_tanh"``, log-probabilities corrected exactly) or clipped to [0, 1]
(``policy="gaussian_clip"``, log-probabilities of the unclipped sample). Options: value
normalisation (running mean and variance of the value targets), PPO's value clipping (off by
default: ``clip_value_loss``), per-minibatch advantage
normalisation, entropy bonus, global-norm gradient clipping, linear learning-rate annealing.
Every hyperparameter is traced, so seeds and settings vmap in one program.

Value normalisation (``normalize_values``), as in MAPPO's reference code: the critic outputs
values in normalised units; the rollout stores that raw output as the old value ``old_v``
and de-normalises it (with the statistics of the rollout's time) only for GAE. The
statistics are then updated with the new targets, the targets are normalised with the new
statistics, and the clipped value loss compares the critic's output with ``old_v`` in the
same units it was produced in: at the first minibatch step of an update ``v == old_v`` and
the clip window ``old_v +- clip_eps`` is centred on the current critic.

Recurrent agents (``recurrent=True``, ``rnn_hidden`` units): actor and critic are each a
``Dense -> GRU -> MLP`` (``networks.RecurrentMLP``) carrying one hidden state per agent, zeroed
at every episode start. The rollout stores the hidden states at its start and each step's
episode-start flag; PPO's minibatches are then sets of whole envs (``num_minibatches`` must
divide ``num_envs``), each replayed as a sequence from its stored starting state, and GAE is
unchanged. A truncated episode bootstraps from the critic's value of its final observation
given the critic's hidden state after the last step.

Statistics are per team (``env.teams``): each team has its own value-normalisation mean and
variance, and advantages are normalised within each team, so predators and a learning prey
in ``tag`` are never pooled. With one team this is the usual single scale.
"""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import Any, ClassVar

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from jaxmarl_coop.envs.core import Env, TimeStep, check_param, check_param_types
from jaxmarl_coop.envs.policy import Policy, feed_forward
from jaxmarl_coop.learners.base import (
    Learner,
    LearnerConfig,
    batch_env,
    check_counts,
    check_probability,
    make_train,
)
from jaxmarl_coop.learners.networks import (
    MLP,
    GroupedApply,
    GroupedRecurrent,
    RecurrentMLP,
    agent_groups,
)
from jaxmarl_coop.learners.returns import gae
from jaxmarl_coop.learners.rollout import RolloutState, collect, episode_metrics

ALGORITHMS = ("ppo", "a2c")
CRITICS = ("centralised", "local")
POLICIES = ("categorical", "gaussian_tanh", "gaussian_clip")


@struct.dataclass
class ActorCriticHyperparams:
    """Traced hyperparameters: vmap over them to sweep."""

    lr: float = 5e-4
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_eps: float = 0.2
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5

    def __post_init__(self) -> None:
        check_param_types(self)
        check_param("lr", self.lr, low=0.0, low_inclusive=False)
        check_probability("gamma", self.gamma)
        check_probability("gae_lambda", self.gae_lambda)
        check_param("clip_eps", self.clip_eps, low=0.0, low_inclusive=False)
        check_param("ent_coef", self.ent_coef, low=0.0)
        check_param("vf_coef", self.vf_coef, low=0.0)
        check_param("max_grad_norm", self.max_grad_norm, low=0.0, low_inclusive=False)


@dataclasses.dataclass(frozen=True)
class ActorCriticConfig(LearnerConfig):
    """Static shape of a run (changing one recompiles).

    ``num_epochs``/``num_minibatches`` default to 4/4 for PPO; A2C takes one gradient step
    on the whole rollout (both must then be 1). ``policy=None`` picks ``categorical`` for
    discrete envs and ``gaussian_tanh`` for continuous ones.
    """

    num_envs: int = 16
    rollout_length: int = 128
    num_updates: int = 200
    algorithm: str = "ppo"
    critic: str = "centralised"
    critic_agent_id: bool = True
    num_epochs: int | None = None
    num_minibatches: int | None = None
    share_params: bool = True
    hidden: tuple[int, ...] = (64, 64)
    activation: str = "tanh"
    policy: str | None = None
    normalize_advantages: bool = True
    normalize_values: bool = False
    #: PPO's value clipping (|v - old_v| <= clip_eps, in the critic's units). Off by default:
    #: an 8-seed study (issue 17; docs/results.md) found it no better on tracking and worse
    #: on spread, where in raw return units it held the critic to ~0.2 per update.
    clip_value_loss: bool = False
    anneal_lr: bool = True
    #: GRU agents: actor and critic each carry a hidden state of ``rnn_hidden`` units
    recurrent: bool = False
    rnn_hidden: int = 64

    Hyperparams: ClassVar[type] = ActorCriticHyperparams

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"ActorCriticConfig.algorithm must be one of {ALGORITHMS}, got "
                             f"{self.algorithm!r}")
        if self.critic not in CRITICS:
            raise ValueError(f"ActorCriticConfig.critic must be one of {CRITICS}, got "
                             f"{self.critic!r}")
        if self.policy is not None and self.policy not in POLICIES:
            raise ValueError(f"ActorCriticConfig.policy must be one of {POLICIES} or None, got "
                             f"{self.policy!r}")
        if self.activation not in ("tanh", "relu"):
            raise ValueError(f"ActorCriticConfig.activation must be 'tanh' or 'relu', got "
                             f"{self.activation!r}")
        default = 4 if self.algorithm == "ppo" else 1
        for name in ("num_epochs", "num_minibatches"):
            if getattr(self, name) is None:
                object.__setattr__(self, name, default)
        check_counts(self, "num_epochs", "num_minibatches", "rnn_hidden")
        if self.algorithm == "a2c" and (self.num_epochs, self.num_minibatches) != (1, 1):
            raise ValueError("A2C takes one gradient step on the whole rollout: num_epochs and "
                             f"num_minibatches must be 1, got {self.num_epochs} and "
                             f"{self.num_minibatches}")
        batch = self.num_envs * self.rollout_length
        if self.recurrent and self.num_envs % self.num_minibatches:
            raise ValueError(f"ActorCriticConfig.num_minibatches ({self.num_minibatches}) must "
                             f"divide num_envs ({self.num_envs}) with recurrent=True: a "
                             "recurrent minibatch is a set of whole envs' sequences")
        if batch % self.num_minibatches:
            raise ValueError(f"ActorCriticConfig.num_minibatches ({self.num_minibatches}) must "
                             f"divide the batch num_envs * rollout_length = {batch}")

    def hyperparams(self, **overrides: Any) -> ActorCriticHyperparams:
        return ActorCriticHyperparams(**overrides)


class Actor(nn.Module):
    """Logits (discrete) or the mean and log-std of a Gaussian (continuous)."""

    hidden: tuple[int, ...]
    num_actions: int
    continuous: bool
    activation: str

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        out = MLP(self.hidden, self.num_actions, self.activation, out_scale=0.01)(x)
        if not self.continuous:
            return out
        log_std = self.param("log_std", nn.initializers.constant(-0.5), (self.num_actions,))
        return jnp.concatenate([out, jnp.broadcast_to(log_std, out.shape)], axis=-1)


def team_members(team_of_agent: np.ndarray) -> list[np.ndarray]:
    """The agent indices of each team, in team order, from ``(N,)`` team indices."""
    return [np.flatnonzero(team_of_agent == t) for t in range(int(team_of_agent.max()) + 1)]


@struct.dataclass
class ValueNorm:
    """Running mean and variance of the value targets, one per team (``normalize_values``).

    ``mean``, ``var`` and ``count`` are ``(T,)``; values are ``(..., N)`` arrays over agents,
    and ``team`` (static, ``(N,)``) says which team's statistics each agent uses.
    """

    mean: jax.Array
    var: jax.Array
    count: jax.Array

    @classmethod
    def create(cls, num_teams: int) -> ValueNorm:
        return cls(jnp.zeros((num_teams,)), jnp.ones((num_teams,)),
                   jnp.full((num_teams,), 1e-4))

    def normalize(self, x: jax.Array, team: np.ndarray) -> jax.Array:
        return (x - self.mean[team]) / jnp.sqrt(self.var[team] + 1e-8)

    def denormalize(self, x: jax.Array, team: np.ndarray) -> jax.Array:
        return x * jnp.sqrt(self.var[team] + 1e-8) + self.mean[team]

    def update(self, batch: jax.Array, team: np.ndarray) -> ValueNorm:
        """The statistics after also seeing ``batch`` ``(..., N)``: each team's from its own
        agents' entries (Chan et al.'s parallel mean and variance update)."""
        members = team_members(team)
        mean = jnp.stack([jnp.mean(batch[..., m]) for m in members])
        var = jnp.stack([jnp.var(batch[..., m]) for m in members])
        n = jnp.asarray([batch[..., m].size for m in members], jnp.float32)
        total = self.count + n
        delta = mean - self.mean
        new_mean = self.mean + delta * n / total
        m2 = self.var * self.count + var * n + delta * delta * self.count * n / total
        return ValueNorm(new_mean, m2 / total, total)


def normalize_per_team(x: jax.Array, team: np.ndarray) -> jax.Array:
    """``(x - mean) / (std + 1e-8)`` over each team's agents (the last axis) apart; with one
    team, over the whole array."""
    members = team_members(team)
    if len(members) == 1:
        return (x - jnp.mean(x)) / (jnp.std(x) + 1e-8)
    for m in members:
        part = x[..., m]
        x = x.at[..., m].set((part - jnp.mean(part)) / (jnp.std(part) + 1e-8))
    return x


@struct.dataclass
class ActorCriticState:
    params: Any  # {"actor": ..., "critic": ...}
    opt_state: Any
    value_norm: ValueNorm
    rollout: RolloutState
    key: jax.Array
    update_step: jax.Array
    hp: ActorCriticHyperparams


def _optimizer(lr: jax.Array, max_grad_norm: jax.Array) -> optax.GradientTransformation:
    return optax.chain(optax.clip_by_global_norm(max_grad_norm), optax.adam(lr, eps=1e-5))


class ActorHead:
    """The actor as ``distrax`` distributions over every agent's action."""

    def __init__(self, config: ActorCriticConfig, env: Env) -> None:
        kind = config.policy or ("gaussian_tanh" if env.continuous_actions else "categorical")
        if env.continuous_actions and kind == "categorical":
            raise ValueError(f"{env.name}: a categorical policy needs a discrete env, but this "
                             "one has continuous actions")
        if not env.continuous_actions and kind != "categorical":
            raise ValueError(f"{env.name}: a continuous policy ({kind!r}) needs an env made "
                             "with continuous_actions=True")
        self.kind = kind
        self.num_actions = env.num_actions
        continuous = kind != "categorical"
        groups = agent_groups(env, config.share_params)
        if config.recurrent:
            self.net = GroupedRecurrent(
                RecurrentMLP(tuple(config.hidden), config.rnn_hidden, env.num_actions,
                             config.activation, out_scale=0.01, gaussian=continuous),
                groups, config.share_params)
        else:
            self.net = GroupedApply(
                Actor(tuple(config.hidden), env.num_actions, continuous, config.activation),
                groups, config.share_params)

    def distribution(self, params: Any, obs: jax.Array, mask: jax.Array) -> distrax.Distribution:
        """``pi(.|obs)`` per agent; for Gaussians, over the raw (unsquashed) sample ``u``."""
        return self.distribution_of(self.net.apply(params, obs), mask)

    def distribution_of(self, out: jax.Array, mask: jax.Array) -> distrax.Distribution:
        """The distribution of the network's output ``out`` (``distribution``'s second half)."""
        if self.kind == "categorical":
            return distrax.Categorical(logits=jnp.where(mask, out, -1e9))
        mean, log_std = out[..., :self.num_actions], out[..., self.num_actions:]
        return distrax.MultivariateNormalDiag(mean, jnp.exp(log_std))

    def sample(self, params: Any, obs: jax.Array, mask: jax.Array, key: jax.Array
               ) -> tuple[jax.Array, jax.Array]:
        """A raw sample and its log-probability, as ``distribution(...).sample`` and
        ``log_prob`` give them. Categorical: computed directly from the normalised logits
        (the same draws bit for bit; distrax's sample and log_prob add a validity check,
        softmax and one-hot products that cost a rollout step about a fifth of its time)."""
        return self.sample_of(self.net.apply(params, obs), mask, key)

    def sample_of(self, out: jax.Array, mask: jax.Array, key: jax.Array
                  ) -> tuple[jax.Array, jax.Array]:
        """``sample`` from the network's output ``out``."""
        if self.kind != "categorical":
            dist = self.distribution_of(out, mask)
            raw = dist.sample(seed=key)
            return raw, self.log_prob(dist, raw)
        logits = jax.nn.log_softmax(jnp.where(mask, out, -1e9))
        raw = jax.random.categorical(key, logits)
        return raw, jnp.take_along_axis(logits, raw[..., None], axis=-1)[..., 0]

    def log_prob(self, dist: distrax.Distribution, raw: jax.Array) -> jax.Array:
        """Log-probability of the action taken, given the raw sample stored in the rollout."""
        logp = dist.log_prob(raw)
        if self.kind == "gaussian_tanh":  # a = (tanh(u) + 1) / 2: subtract log |da/du|
            logp = logp - jnp.sum(jnp.log(0.5 * (1.0 - jnp.tanh(raw) ** 2) + 1e-6), axis=-1)
        return logp

    def to_env_action(self, raw: jax.Array) -> jax.Array:
        if self.kind == "categorical":
            return raw.astype(jnp.int32)
        if self.kind == "gaussian_tanh":
            return (jnp.tanh(raw) + 1.0) / 2.0
        return jnp.clip(raw, 0.0, 1.0)


def policy_loss(algorithm: str, logp: jax.Array, old_logp: jax.Array, advantages: jax.Array,
                clip_eps: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The actor's loss and the probability ratios ``pi / pi_old``.

    PPO: ``-mean(min(ratio * A, clip(ratio, 1 - eps, 1 + eps) * A))``;
    A2C: ``-mean(log pi(a|s) * A)``, whose gradient is the seed's ``grad log pi(a|s) A``.
    """
    ratio = jnp.exp(logp - old_logp)
    if algorithm == "a2c":
        return -jnp.mean(logp * advantages), ratio
    clipped = jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps)
    return -jnp.mean(jnp.minimum(ratio * advantages, clipped * advantages)), ratio


def value_loss(v: jax.Array, old_v: jax.Array, targets: jax.Array, clip_eps: jax.Array,
               clip: bool) -> jax.Array:
    """``0.5 * mean((v - targets)^2)``; with ``clip``, the larger of that and the loss of
    ``old_v + clip(v - old_v, -eps, eps)`` (PPO's clipped value loss)."""
    loss = jnp.square(v - targets)
    if clip:
        v_clipped = old_v + jnp.clip(v - old_v, -clip_eps, clip_eps)
        loss = jnp.maximum(loss, jnp.square(v_clipped - targets))
    return 0.5 * jnp.mean(loss)


def _critic_inputs(config: ActorCriticConfig, obs: jax.Array, global_state: jax.Array,
                   num_agents: int) -> jax.Array:
    if config.critic == "local":
        return obs
    return jnp.broadcast_to(global_state[..., None, :],
                            (*global_state.shape[:-1], num_agents, global_state.shape[-1]))


def sequence_minibatches(key: jax.Array, sequences: dict[str, jax.Array],
                         starts: dict[str, jax.Array], num_minibatches: int
                         ) -> dict[str, jax.Array]:
    """A recurrent epoch's minibatches: the ``B`` envs shuffled and split into
    ``num_minibatches`` sets of whole envs. ``sequences`` are ``(T, B, ...)`` (time first),
    ``starts`` the hidden states at the sequences' start ``(B, ...)``; returns both stacked on
    a leading minibatch axis, ``(M, T, B / M, ...)`` and ``(M, B / M, ...)``, every env's
    sequence with its own starting state, each env in exactly one minibatch."""
    num_envs = jax.tree.leaves(starts)[0].shape[0]
    per = num_envs // num_minibatches
    order = jax.random.permutation(key, num_envs)
    seqs = jax.tree.map(lambda x: jnp.swapaxes(
        x[:, order].reshape((x.shape[0], num_minibatches, per, *x.shape[2:])), 0, 1), sequences)
    h0 = jax.tree.map(lambda x: x[order].reshape((num_minibatches, per, *x.shape[1:])), starts)
    return {**seqs, **h0}


def make_learner(config: ActorCriticConfig, env: Env, env_params: Any) -> Learner:
    """MAPPO / MAA2C / IPPO / IA2C on ``env``, as configured."""
    policy = ActorHead(config, env)
    venv = batch_env(env, config.num_envs)
    n = env.num_agents
    groups = agent_groups(env, config.share_params)
    team = agent_groups(env, True)  # (N,) each agent's team: per-team statistics
    with_ids = config.share_params if config.critic == "local" else config.critic_agent_id
    if config.recurrent:
        critic = GroupedRecurrent(RecurrentMLP(tuple(config.hidden), config.rnn_hidden, 1,
                                               config.activation), groups, with_ids)
    else:
        critic = GroupedApply(MLP(tuple(config.hidden), 1, config.activation), groups, with_ids)
    optimizer = optax.inject_hyperparams(_optimizer)
    batch_size = config.num_envs * config.rollout_length
    minibatch = batch_size // config.num_minibatches

    def critic_output(params: Any, obs: jax.Array, state: jax.Array) -> jax.Array:
        """The critic's raw output: normalised units with ``normalize_values``."""
        return critic.apply(params["critic"], _critic_inputs(config, obs, state, n))[..., 0]

    def to_returns(value_norm: ValueNorm, v: jax.Array) -> jax.Array:
        """A raw critic output in return units (de-normalised with ``value_norm``)."""
        return value_norm.denormalize(v, team) if config.normalize_values else v

    def init(key: jax.Array, hp: ActorCriticHyperparams) -> ActorCriticState:
        k_env, k_actor, k_critic, key = jax.random.split(key, 4)
        env_state, ts = venv.reset(k_env, env_params)
        params = {"actor": policy.net.init(k_actor, ts.obs[0]),
                  "critic": critic.init(k_critic, _critic_inputs(config, ts.obs[0],
                                                                 ts.global_state[0], n))}
        opt_state = optimizer(lr=hp.lr, max_grad_norm=hp.max_grad_norm).init(params)
        value_norm = ValueNorm.create(len(team_members(team)))
        carry = ({"actor": policy.net.carry((config.num_envs,)),
                  "critic": critic.carry((config.num_envs,))} if config.recurrent else ())
        return ActorCriticState(params, opt_state, value_norm,
                                RolloutState(env_state, ts, carry), key,
                                jnp.zeros((), jnp.int32), hp)

    def actor_forward(params: Any, batch: dict[str, jax.Array]) -> distrax.Distribution:
        """The policy on a minibatch: per transition, or (recurrent) along ``(T, envs, ...)``
        sequences from their stored starting hidden states."""
        if not config.recurrent:
            return policy.distribution(params["actor"], batch["obs"], batch["action_mask"])
        _, out = policy.net.sequence(params["actor"], batch["h0_actor"], batch["obs"],
                                     batch["start"])
        return policy.distribution_of(out, batch["action_mask"])

    def critic_forward(params: Any, batch: dict[str, jax.Array]) -> jax.Array:
        """The critic's raw output on a minibatch (as ``actor_forward``)."""
        critic_in = _critic_inputs(config, batch["obs"], batch["global_state"], n)
        if not config.recurrent:
            return critic.apply(params["critic"], critic_in)[..., 0]
        _, v = critic.sequence(params["critic"], batch["h0_critic"], critic_in, batch["start"])
        return v[..., 0]

    def loss_fn(params: Any, value_norm: ValueNorm, batch: dict[str, jax.Array],
                hp: ActorCriticHyperparams) -> tuple[jax.Array, dict[str, jax.Array]]:
        dist = actor_forward(params, batch)
        logp = policy.log_prob(dist, batch["raw"])
        entropy = jnp.mean(dist.entropy())
        adv = batch["advantages"]
        if config.normalize_advantages:
            adv = normalize_per_team(adv, team)
        pg_loss, ratio = policy_loss(config.algorithm, logp, batch["log_prob"], adv,
                                     hp.clip_eps)
        v = critic_forward(params, batch)
        # old_v is the critic's raw output at rollout time, in the units v is in; only the
        # targets are normalised (with the statistics updated by this update's targets)
        targets, old_v = batch["targets"], batch["value"]
        if config.normalize_values:
            targets = value_norm.normalize(targets, team)
        v_loss = value_loss(v, old_v, targets, hp.clip_eps,
                            config.clip_value_loss and config.algorithm == "ppo")
        total = pg_loss + hp.vf_coef * v_loss - hp.ent_coef * entropy
        value_change = jnp.abs(jax.lax.stop_gradient(v) - old_v)
        stats = {"pg_loss": pg_loss, "value_loss": v_loss, "entropy": entropy,
                 "approx_kl": jnp.mean((ratio - 1.0) - (logp - batch["log_prob"])),
                 "clip_fraction": jnp.mean(jnp.abs(ratio - 1.0) > hp.clip_eps),
                 "value_change": jnp.mean(value_change),
                 "value_clip_fraction": jnp.mean(value_change > hp.clip_eps)}
        return total, stats

    def gradient_step(state: ActorCriticState, batch: dict[str, jax.Array]):
        (_, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params, state.value_norm, batch, state.hp)
        updates, opt_state = optimizer(lr=state.hp.lr, max_grad_norm=state.hp.max_grad_norm
                                       ).update(grads, state.opt_state, state.params)
        return state.replace(params=optax.apply_updates(state.params, updates),
                             opt_state=opt_state), stats

    def act(params: Any, key: jax.Array, ts: TimeStep):
        raw, log_prob = policy.sample(params["actor"], ts.obs, ts.action_mask, key)
        extras = {"raw": raw, "log_prob": log_prob,
                  "value": critic_output(params, ts.obs, ts.global_state)}
        return policy.to_env_action(raw), extras

    def act_recurrent(params: Any, key: jax.Array, ts: TimeStep, carry: dict[str, jax.Array]):
        start = ts.done  # (B,) this observation begins an episode: the carry restarts
        h_actor, out = policy.net.step(params["actor"], carry["actor"], ts.obs, start)
        raw, log_prob = policy.sample_of(out, ts.action_mask, key)
        h_critic, v = critic.step(params["critic"], carry["critic"],
                                  _critic_inputs(config, ts.obs, ts.global_state, n), start)
        extras = {"raw": raw, "log_prob": log_prob, "value": v[..., 0], "start": start,
                  "h_critic": h_critic}
        return policy.to_env_action(raw), extras, {"actor": h_actor, "critic": h_critic}

    def update(state: ActorCriticState) -> tuple[ActorCriticState, dict[str, jax.Array]]:
        key, k_roll, k_shuffle = jax.random.split(state.key, 3)
        params, value_norm = state.params, state.value_norm
        start_carry = state.rollout.carry
        if config.recurrent:
            rollout, tr, info = collect(venv, env_params, partial(act_recurrent, params),
                                        state.rollout, k_roll, config.rollout_length)
            # the value of each step's true next observation, from the critic's hidden state
            # after the step (before any episode-start reset): a truncation's bootstrap
            _, v_next = critic.step(params["critic"], tr.extras["h_critic"],
                                    _critic_inputs(config, tr.next_obs, tr.next_global_state,
                                                   n), jnp.zeros(tr.terminated.shape, bool))
            next_values = to_returns(value_norm, v_next[..., 0])
        else:
            rollout, tr, info = collect(venv, env_params, partial(act, params), state.rollout,
                                        k_roll, config.rollout_length)
            next_values = to_returns(value_norm, critic_output(params, tr.next_obs,
                                                               tr.next_global_state))
        advantages, targets = gae(tr.reward, to_returns(value_norm, tr.extras["value"]),
                                  next_values,
                                  tr.terminated[..., None], tr.truncated[..., None],
                                  state.hp.gamma, state.hp.gae_lambda)
        if config.normalize_values:
            value_norm = value_norm.update(targets, team)
        batch = {"obs": tr.obs, "action_mask": tr.action_mask,
                 "global_state": tr.global_state, "raw": tr.extras["raw"],
                 "log_prob": tr.extras["log_prob"], "value": tr.extras["value"],
                 "advantages": advantages, "targets": targets}
        flat = None if config.recurrent else \
            jax.tree.map(lambda x: x.reshape((batch_size, *x.shape[2:])), batch)
        lr = state.hp.lr * (1.0 - state.update_step / config.num_updates) \
            if config.anneal_lr else state.hp.lr
        opt_state = state.opt_state._replace(
            hyperparams={**state.opt_state.hyperparams, "lr": jnp.asarray(lr, jnp.float32)})
        state = state.replace(opt_state=opt_state, value_norm=value_norm)

        if config.recurrent:  # minibatches of whole envs: (T, B, ...) sequences, split on B
            batch.update(start=tr.extras["start"])
            h0 = {"h0_actor": start_carry["actor"], "h0_critic": start_carry["critic"]}

            def shuffle(key: jax.Array) -> dict[str, jax.Array]:
                return sequence_minibatches(key, batch, h0, config.num_minibatches)
        else:
            def shuffle(key: jax.Array) -> dict[str, jax.Array]:
                order = jax.random.permutation(key, batch_size)
                return jax.tree.map(
                    lambda x: x[order].reshape((config.num_minibatches, minibatch,
                                                *x.shape[1:])), flat)

        def epoch(state: ActorCriticState, key: jax.Array):
            return jax.lax.scan(gradient_step, state, shuffle(key))

        state, stats = jax.lax.scan(epoch, state, jax.random.split(k_shuffle, config.num_epochs))
        metrics = episode_metrics(info)
        metrics.update({k: jnp.mean(v) for k, v in stats.items()})
        # float32: an int32 product overflows past 2**31 env steps; exact to 2**24
        metrics.update(lr=jnp.asarray(lr, jnp.float32),
                       env_steps=(state.update_step + 1).astype(jnp.float32) * batch_size)
        return state.replace(rollout=rollout, key=key, update_step=state.update_step + 1), metrics

    return Learner(init, update, make_train(init, update, config.num_updates))


def make_policy(config: ActorCriticConfig, env: Env, params: Any, greedy: bool = True
                ) -> Policy:
    """The trained actor of ``params`` (as ``policy_params`` gives them) as a ``Policy``:
    its mode (``greedy``) or a sample of its distribution. A recurrent actor's carry is its
    hidden state ``(N, rnn_hidden)`` per env (zeros at an episode start)."""
    head = ActorHead(config, env)

    def pick(key: jax.Array, dist: distrax.Distribution) -> jax.Array:
        return head.to_env_action(dist.mode() if greedy else dist.sample(seed=key))

    if config.recurrent:
        def act_recurrent(key: jax.Array, ts: TimeStep, carry: jax.Array
                          ) -> tuple[jax.Array, jax.Array]:
            # the carry is reset by whoever steps the env (envs.reset_carry), not here
            carry, out = head.net.step(params["actor"], carry, ts.obs,
                                       jnp.zeros(ts.obs.shape[:-2], bool))
            return pick(key, head.distribution_of(out, ts.action_mask)), carry

        return Policy(act_recurrent,
                      lambda batch=None: head.net.carry(() if batch is None else (batch,)),
                      name="actor_critic_recurrent")

    def act(key: jax.Array, ts: TimeStep) -> jax.Array:
        return pick(key, head.distribution(params["actor"], ts.obs, ts.action_mask))

    return feed_forward(act, name="actor_critic")


def policy_params(state: ActorCriticState) -> Any:
    """What ``make_policy`` needs from a learner state: the network parameters."""
    return state.params


Config = ActorCriticConfig
Hyperparams = ActorCriticHyperparams
