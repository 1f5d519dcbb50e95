"""Value decomposition: VDN and QMIX, one team's joint Q-value learned from a team reward.

Each agent ``i`` has a Q-network ``Q_i(o_i, a_i)`` (``dqn.make_network``: shared within the
team, with agent ids, or one per agent). A *mixer* turns the agents' chosen values into the
team's ``Q_tot``:

- ``mixer="vdn"`` (Sunehag et al. 2018): ``Q_tot = sum_i Q_i(o_i, a_i)``;
- ``mixer="qmix"`` (Rashid et al. 2018): a two-layer network of the ``Q_i`` whose weights
  are produced from the global state ``s`` by hypernetworks and made non-negative::

      h     = elu(q @ |W_1(s)| + b_1(s))         q: (N,), |W_1(s)|: (N, mixer_embed)
      Q_tot = h @ |W_2(s)| + V(s)                 |W_2(s)|: (mixer_embed,)

  ``W_1`` and ``W_2`` are MLPs of ``s`` with one hidden layer of ``hypernet_hidden`` ReLU
  units, ``b_1`` is linear in ``s`` and ``V`` an MLP with one hidden layer of
  ``mixer_embed`` units. Non-negative weights and a monotone ``elu`` make
  ``dQ_tot/dQ_i >= 0``: every agent's greedy action is then the joint greedy action.

Everything else is the DQN machinery (``dqn.make_q_learner``): epsilon-greedy acting on each
agent's own ``Q_i``, the replay buffer (which also stores ``global_state`` and
``next_global_state`` for QMIX), clipped Adam, a target network. The loss regresses
``Q_tot`` of the taken joint action towards the n-step joint target::

    y = sum_{k<m} gamma^k r_team,k + gamma^m (1 - terminated) Q_tot_target(s'_{m-1}, a*)
    a*_i = argmax_{legal a} Q_i(o'_i, a)     (online network with double_dqn, else target)

where ``Q_tot_target`` applies the target agent networks and the *target* mixer at the
next state ``s'``, and ``m`` is as in ``returns.nstep_targets``. Because the mixer is
monotone, the per-agent argmax maximises ``Q_tot``. The team reward ``r_team`` is the
**sum** of the agents' rewards: in a common-payoff task (every agent gets the team reward)
``Q_tot`` then estimates ``N`` times the common return, matching the ``episode_return``
metric (also a sum over agents). The loss is ``mean(0.5 * (y - Q_tot)^2)``; with
``hysteretic_beta < 1`` a negative joint TD error ``y - Q_tot`` is learned at
``hysteretic_beta`` times the learning rate (hysteretic VDN / QMIX, by ``dqn.hysteretic_adam``:
Adam's step-size scale comes from the plain gradient, its momentum from the one whose
negative-error terms are weighted by ``hysteretic_beta``; compiled with the config switch
``hysteretic=True``, see ``dqn``; 1, the default, is the plain rule).

Recurrent agents (``recurrent=True``): the agent networks are GRUs trained on replayed
sequences exactly as in ``dqn`` (its docstring's "Recurrent agents": stored hidden state,
burn-in, episode starts inside a sequence, n-step windows cut at the sequence end). The
mixer is applied at every step after the burn-in, QMIX's hypernetworks reading that step's
global state ``s_t``; the target mixer takes each step's true next state ``s'_t`` and the
agents' bootstrap values there, and ``y`` is the n-step target of the team reward along the
sequence (``joint_sequence_q_and_targets``). The loss is the mean over sequences and
trained steps.

Value decomposition assumes one cooperating team: an env with several ``teams`` (predators
and prey, a general-sum game) is refused.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxmarl_coop.envs.core import Env
from jaxmarl_coop.envs.policy import Policy
from jaxmarl_coop.learners import dqn
from jaxmarl_coop.learners.base import Learner, check_counts
from jaxmarl_coop.learners.dqn import (
    DQNConfig,
    DQNHyperparams,
    QStep,
    bootstrap_values,
    make_network,
    make_q_learner,
    sequence_nstep_targets,
    sequence_q_values,
)
from jaxmarl_coop.learners.networks import MLP, orthogonal
from jaxmarl_coop.learners.returns import nstep_targets_batch

MIXERS = ("vdn", "qmix")


@dataclasses.dataclass(frozen=True)
class VDConfig(DQNConfig):
    """``DQNConfig`` plus the mixer (static; changing one recompiles)."""

    mixer: str = "qmix"  # "vdn" (sum) or "qmix" (monotone state-conditioned mixing)
    mixer_embed: int = 32  # QMIX: width of the mixing layer
    hypernet_hidden: int = 64  # QMIX: hidden width of the weight hypernetworks

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.mixer not in MIXERS:
            raise ValueError(f"VDConfig.mixer must be one of {MIXERS}, got {self.mixer!r}")
        check_counts(self, "mixer_embed", "hypernet_hidden")


class VDNMixer(nn.Module):
    """``Q_tot = sum_i Q_i``; no parameters, the state is ignored."""

    @nn.compact
    def __call__(self, agent_qs: jax.Array, state: jax.Array | None = None) -> jax.Array:
        """``agent_qs`` ``(..., N)`` -> ``(...)``."""
        return jnp.sum(agent_qs, axis=-1)


class QMixer(nn.Module):
    """QMIX's monotone mixing network (see the module docstring)."""

    num_agents: int
    embed: int = 32
    hypernet_hidden: int = 64

    def setup(self) -> None:
        self.hyper_w1 = MLP((self.hypernet_hidden,), self.num_agents * self.embed)
        self.hyper_b1 = nn.Dense(self.embed, kernel_init=orthogonal())
        self.hyper_w2 = MLP((self.hypernet_hidden,), self.embed)
        self.value = MLP((self.embed,), 1)

    def mixing_weights(self, state: jax.Array
                       ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
        """``(|W_1| (..., N, E), b_1 (..., E), |W_2| (..., E), V (...))`` at ``state``
        ``(..., S)``."""
        w1 = jnp.abs(self.hyper_w1(state)).reshape(*state.shape[:-1], self.num_agents,
                                                   self.embed)
        w2 = jnp.abs(self.hyper_w2(state))
        return w1, self.hyper_b1(state), w2, self.value(state)[..., 0]

    def __call__(self, agent_qs: jax.Array, state: jax.Array | None = None) -> jax.Array:
        """``agent_qs`` ``(..., N)`` and ``state`` ``(..., S)`` -> ``Q_tot`` ``(...)``."""
        if state is None:
            raise ValueError("QMixer needs the global state")
        w1, b1, w2, v = self.mixing_weights(state)
        hidden = nn.elu(jnp.einsum("...n,...ne->...e", agent_qs, w1) + b1)
        return jnp.sum(hidden * w2, axis=-1) + v


def make_mixer(config: VDConfig, env: Env) -> nn.Module:
    """The mixer that ``config.mixer`` names, sized for ``env``."""
    if config.mixer == "vdn":
        return VDNMixer()
    return QMixer(env.num_agents, config.mixer_embed, config.hypernet_hidden)


def check_env(env: Env) -> None:
    """``ValueError`` unless ``env`` has discrete actions and a single (cooperating) team."""
    name = env.name or type(env).__name__
    if env.continuous_actions:
        raise ValueError(f"{name}: value decomposition needs discrete actions; make the env "
                         "with continuous_actions=False")
    if len(env.teams) != 1:
        raise ValueError(f"{name}: value decomposition learns one team's joint value, but the "
                         f"env has teams {sorted(env.teams)}; use dqn (independent learners)")


def joint_q_and_targets(agent_q: Callable[[Any, jax.Array], jax.Array], mixer: nn.Module,
                        params: Any, target_params: Any, batch: dict[str, jax.Array],
                        gamma: jax.Array | float, double_dqn: bool
                        ) -> tuple[jax.Array, jax.Array]:
    """``(Q_tot, y)``, both ``(B,)``, on a batch of ``(B, n, ...)`` sequences.

    ``params`` and ``target_params`` are ``{"agents": ..., "mixer": ...}``;
    ``agent_q(agent_params, obs)`` maps ``(..., N, D)`` to ``(..., N, A)``. The batch holds
    ``obs, action, reward, terminated, truncated, next_obs, next_action_mask`` and, for a
    mixer that reads the state, ``global_state, next_global_state``.
    """
    state = batch.get("global_state")
    next_state = batch.get("next_global_state")
    q = agent_q(params["agents"], batch["obs"][:, 0])  # (B, N, A)
    q_taken = jnp.take_along_axis(q, batch["action"][:, 0, :, None], axis=-1)[..., 0]
    q_tot = mixer.apply(params["mixer"], q_taken, None if state is None else state[:, 0])
    next_q = bootstrap_values(agent_q, params["agents"], target_params["agents"],
                              batch["next_obs"], batch["next_action_mask"], double_dqn)
    next_tot = mixer.apply(target_params["mixer"], next_q, next_state)  # (B, n)
    team_reward = jnp.sum(batch["reward"], axis=-1)  # (B, n)
    targets = nstep_targets_batch(team_reward, batch["terminated"], batch["truncated"],
                                  next_tot, gamma)
    return q_tot, targets


def joint_sequence_q_and_targets(step: QStep, mixer: nn.Module, params: Any,
                                 target_params: Any, batch: dict[str, jax.Array],
                                 gamma: jax.Array | float, n_step: int, burn_in: int,
                                 double_dqn: bool) -> tuple[jax.Array, jax.Array]:
    """Recurrent ``(Q_tot, y)``, both ``(B, L - burn_in)``, on ``(B, L, ...)`` sequences.

    The agents' Q-values and bootstrap values come from ``dqn.sequence_q_values`` (online and
    target networks unrolled from the stored hidden state, burn-in steps only warming it);
    the mixer is applied at every step after the burn-in with that step's global state, the
    target mixer at each step's true next state, and ``y`` is the n-step target of the team
    reward along the sequence (``dqn.sequence_nstep_targets``). ``step(agent_params, h, obs,
    start)`` is the agents' recurrent step; params as in ``joint_q_and_targets``.
    """
    state = batch.get("global_state")
    next_state = batch.get("next_global_state")
    q, next_q = sequence_q_values(step, params["agents"], target_params["agents"], batch,
                                  burn_in, double_dqn)  # (B, T, N, A), (B, T, N)
    q_taken = jnp.take_along_axis(q, batch["action"][:, burn_in:, :, None], axis=-1)[..., 0]
    q_tot = mixer.apply(params["mixer"], q_taken,
                        None if state is None else state[:, burn_in:])
    next_tot = mixer.apply(target_params["mixer"], next_q,
                           None if next_state is None else next_state[:, burn_in:])
    team_reward = jnp.sum(batch["reward"][:, burn_in:], axis=-1)
    targets = sequence_nstep_targets(team_reward, batch["terminated"][:, burn_in:],
                                     batch["truncated"][:, burn_in:],
                                     jax.lax.stop_gradient(next_tot), gamma, n_step)
    return q_tot, targets


def make_learner(config: VDConfig, env: Env, env_params: Any) -> Learner:
    """VDN or QMIX (``config.mixer``) on ``env``: one team, discrete actions."""
    if not isinstance(config, VDConfig):
        raise ValueError(f"value_decomposition.make_learner needs a VDConfig, got "
                         f"{type(config).__name__}")
    check_env(env)
    net = make_network(config, env)
    mixer = make_mixer(config, env)
    uses_state = config.mixer == "qmix"

    def agent_q(params: Any, obs: jax.Array) -> jax.Array:
        return net.apply(params["agents"], obs)

    def init_params(key: jax.Array) -> Any:
        k_agents, k_mixer = jax.random.split(key)
        agents = net.init(k_agents, jnp.zeros((env.num_agents, env.obs_dim), jnp.float32))
        mix = mixer.init(k_mixer, jnp.zeros((env.num_agents,), jnp.float32),
                         jnp.zeros((env.state_dim,), jnp.float32))
        return {"agents": agents, "mixer": mix}

    def loss(params: Any, target_params: Any, batch: dict[str, jax.Array],
             hp: DQNHyperparams) -> tuple[jax.Array, jax.Array]:
        q_tot, targets = joint_q_and_targets(net.apply, mixer, params, target_params, batch,
                                             hp.gamma, config.double_dqn)
        return q_tot, targets

    if config.recurrent:
        def sequence_loss(params: Any, target_params: Any, batch: dict[str, jax.Array],
                          hp: DQNHyperparams) -> tuple[jax.Array, jax.Array]:
            return joint_sequence_q_and_targets(net.step, mixer, params, target_params, batch,
                                                hp.gamma, config.n_step, config.burn_in,
                                                config.double_dqn)

        def agent_q_step(params: Any, h: jax.Array, obs: jax.Array, start: jax.Array
                         ) -> tuple[jax.Array, jax.Array]:
            return net.step(params["agents"], h, obs, start)

        return make_q_learner(config, env, env_params, init_params=init_params, agent_q=None,
                              loss=sequence_loss, store_global_state=uses_state,
                              agent_q_step=agent_q_step)

    return make_q_learner(config, env, env_params, init_params=init_params, agent_q=agent_q,
                          loss=loss, store_global_state=uses_state)


def make_policy(config: VDConfig, env: Env, params: Any, greedy: bool = True,
                epsilon: float = 0.05) -> Policy:
    """Every agent's greedy action under its own ``Q_i`` (the joint greedy action of a
    monotone mixer) as a ``Policy``; ``params`` as in ``DQNState.params``. Recurrent agents
    carry their hidden states, as ``dqn.make_policy``'s."""
    return dqn.make_policy(config, env, params["agents"], greedy, epsilon)


policy_params = dqn.policy_params
Config = VDConfig
Hyperparams = dqn.DQNHyperparams
