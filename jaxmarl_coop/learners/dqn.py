"""Independent DQN (IQL): one Q-network per agent group, replay held in the learner state.

Every update collects ``rollout_length`` steps from ``num_envs`` auto-resetting envs with
epsilon-greedy actions, adds them to a ``flashbax`` trajectory buffer (inside the jitted
state), then takes ``num_epochs`` gradient steps on sampled sequences of ``n_step``
transitions. Each agent regresses its own ``Q(o_i, a_i)`` towards the n-step target
(``returns.nstep_targets``) bootstrapped from a target network::

    y = sum_{k<m} gamma^k r_k + gamma^m (1 - terminated) * Q_target(o'_{m-1}, a*)

with ``a*`` the target network's argmax, or the online network's with ``double_dqn``; ``o'``
is the true next observation (a truncated episode bootstraps from its final observation, a
terminated one not at all). Target parameters follow the online ones every
``target_update_interval`` updates (``tau = 1`` copies, ``tau < 1`` blends). Parameter
sharing: see ``networks.agent_groups`` (shared within a team, with agent ids in the input).

The loss is ``mean(0.5 * (y - Q)^2)`` over agents and samples, minimised by clipped Adam.

Hysteretic Q-learning (Matignon et al. 2007: bad news, often a partner's exploration, is
learned more slowly) has two learning rates, ``lr`` for a TD error ``delta = y - Q >= 0`` and
``hysteretic_beta * lr`` for ``delta < 0``. A loss weight alone cannot do that under Adam:
Adam divides by the root of the gradient's second moment, so a batch whose TD errors are all
negative moves the same for any uniform weight. ``hysteretic_adam`` therefore keeps the two
moments apart (the rule, per parameter)::

    g_w = grad mean(0.5 * w * delta^2)     w = hysteretic_beta where delta < 0, else 1
    g   = grad mean(0.5 * delta^2)         the plain gradient
    (both clipped by the factor that clips g to global norm max_grad_norm)
    m <- b1 m + (1 - b1) g_w               first moment of the weighted gradient
    v <- b2 v + (1 - b2) g^2               second moment (the step-size scale) of the plain one
    theta <- theta - lr * m_hat / (sqrt(v_hat) + eps)

The per-parameter scale ``1 / (sqrt(v_hat) + eps)`` is set by the plain TD errors, so the
weight is not normalised away: a sample with a negative TD error moves the estimate with
``hysteretic_beta`` times the step of one with a positive error of the same size (an
all-negative batch: ``hysteretic_beta`` times the plain step). With ``hysteretic_beta = 1``
``g_w == g`` and this is plain clipped Adam.

The two-rate step needs a second backward pass, so it is compiled only where the static
config switch ``hysteretic=True`` asks for it (runs set it when a ``hysteretic_beta`` below 1
is given); otherwise the learner takes the plain clipped-Adam step, and a
``hysteretic_beta`` below 1 with ``hysteretic=False`` is refused at build
(``config.hyperparams``, ``registry.make_hyperparams``) and at an eager ``init``.

Recurrent agents (``recurrent=True``; R2D2's sequence replay, Kapturowski et al. 2019). Each
agent group's Q-network is ``Dense -> GRU -> MLP`` (``networks.GroupedRecurrent``), every
agent carrying a hidden state of ``rnn_hidden`` units in ``RolloutState.carry``, zeroed at
every episode start (terminated or truncated). The rules:

- *Storage.* Every env step goes into its env's row of the trajectory buffer with two more
  fields: ``start`` (the observation begins an episode, so the hidden state was zeroed
  before the step) and ``h`` (the acting network's hidden state before the step, before that
  reset). This costs ``N * rnn_hidden`` floats per stored step.
- *Sampling.* ``batch_size`` runs of ``sequence_length`` (L) consecutive steps of one env,
  starting at any stored step (period 1). A run may cross episode ends: ``start`` marks them.
- *Unrolling.* Online and target networks both start from the **stored** ``h`` of the run's
  first step and zero it at every ``start`` (the first step's too). The first ``burn_in``
  (B) steps only warm the hidden state: they get no loss and no gradient flows back through
  them (R2D2 uses both, the stored state and a burn-in: the stored state is from older
  parameters, and the burn-in lets the current ones move away from it).
- *Targets.* For every step ``t >= B``, each network takes one more step from its hidden
  state after step ``t`` on the true next observation ``o'_t`` (without a reset: a
  truncated episode bootstraps from its final observation with the episode's memory); the
  bootstrap is ``Q_target`` there at the greedy legal action (online network's with
  ``double_dqn``). The n-step target is the one above with the window ``t .. t+n-1`` cut at
  the first episode end and at the run's last step, which is treated like a truncation: it
  bootstraps from its own next observation. So the last ``n_step - 1`` steps of a run get
  shorter targets (still sound ones), not a mask; ``n_step <= L - B`` is required.
- *Loss.* ``mean(0.5 * (y - Q)^2)`` over agents, runs and the ``L - B`` steps after the burn-in
  (hysteretic as above). Defaults: ``sequence_length=16``, ``burn_in=4``,
  ``rnn_hidden=64``; the buffer must hold ``sequence_length + rollout_length`` steps per env.

Feed-forward learning (the default) is unchanged, bit for bit.

``make_q_learner`` is the machinery every value-based learner shares (buffer, acting,
optimiser, target network); ``make_learner`` gives it per-agent networks and the loss above,
``value_decomposition`` a mixer and a joint loss.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar

import flashbax as fbx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from jaxmarl_coop.envs.core import (
    Env,
    TimeStep,
    check_param,
    check_param_types,
    concrete_values,
)
from jaxmarl_coop.envs.policy import Policy, feed_forward
from jaxmarl_coop.learners.base import (
    Learner,
    LearnerConfig,
    batch_env,
    check_counts,
    check_probability,
    epsilon_greedy,
    linear_schedule,
    make_train,
    masked_argmax,
)
from jaxmarl_coop.learners.networks import (
    MLP,
    GroupedApply,
    GroupedRecurrent,
    RecurrentMLP,
    agent_groups,
)
from jaxmarl_coop.learners.returns import nstep_targets, nstep_targets_batch
from jaxmarl_coop.learners.rollout import RolloutState, collect, episode_metrics


@struct.dataclass
class DQNHyperparams:
    """Traced hyperparameters: vmap over them to sweep."""

    lr: float = 5e-3
    gamma: float = 0.99
    epsilon_start: float = 1.0
    epsilon_end: float = 0.05
    epsilon_decay_fraction: float = 0.1
    tau: float = 1.0
    max_grad_norm: float = 10.0
    hysteretic_beta: float = 1.0  # learning-rate factor for negative TD errors, in (0, 1]

    def __post_init__(self) -> None:
        check_param_types(self)
        check_param("lr", self.lr, low=0.0, low_inclusive=False)
        check_probability("gamma", self.gamma)
        check_probability("epsilon_start", self.epsilon_start)
        check_probability("epsilon_end", self.epsilon_end)
        check_param("epsilon_decay_fraction", self.epsilon_decay_fraction, low=0.0, high=1.0,
                    low_inclusive=False)
        check_param("tau", self.tau, low=0.0, high=1.0, low_inclusive=False)
        check_param("max_grad_norm", self.max_grad_norm, low=0.0, low_inclusive=False)
        check_param("hysteretic_beta", self.hysteretic_beta, low=0.0, high=1.0,
                    low_inclusive=False)


@dataclasses.dataclass(frozen=True)
class DQNConfig(LearnerConfig):
    """Static shape of a run: sizes, counts and switches (changing one recompiles)."""

    num_envs: int = 8
    rollout_length: int = 1  # env steps (per env) per update
    num_updates: int = 10_000
    buffer_size: int = 10_000  # transitions kept (over all envs)
    batch_size: int = 32  # sequences per gradient step
    learning_starts: int = 1_000  # env steps (over all envs) before the first gradient step
    num_epochs: int = 1  # gradient steps per update
    target_update_interval: int = 10  # updates
    n_step: int = 1
    double_dqn: bool = True
    share_params: bool = True
    hidden: tuple[int, ...] = (64, 64)
    anneal_lr: bool = False  # learning rate falls linearly to 0 over training
    #: compile the two-rate (hysteretic) optimiser: needed for ``hysteretic_beta < 1``.
    #: Off, the learner takes the plain clipped-Adam step (one backward pass, not two).
    hysteretic: bool = False
    #: GRU agents (``Dense -> GRU -> MLP``, ``rnn_hidden`` units) trained on replayed
    #: sequences; the next three fields are read only with ``recurrent=True``
    recurrent: bool = False
    rnn_hidden: int = 64
    sequence_length: int = 16  # L: env steps of one env in a sampled sequence
    burn_in: int = 4  # B: leading steps of a sequence that only warm the hidden state

    Hyperparams: ClassVar[type] = DQNHyperparams

    def __post_init__(self) -> None:
        super().__post_init__()
        check_counts(self, "buffer_size",
                     "batch_size", "num_epochs", "target_update_interval", "n_step")
        check_counts(self, "learning_starts", minimum=0)
        if self.buffer_size < self.batch_size:
            raise ValueError(f"DQNConfig.buffer_size ({self.buffer_size}) must be at least "
                             f"batch_size ({self.batch_size})")
        if self.buffer_size // self.num_envs < self.n_step + self.rollout_length:
            raise ValueError(f"DQNConfig.buffer_size ({self.buffer_size}) must hold at least "
                             f"n_step + rollout_length = {self.n_step + self.rollout_length} "
                             f"steps of each of the {self.num_envs} envs")
        check_counts(self, "rnn_hidden", "sequence_length")
        check_counts(self, "burn_in", minimum=0)
        name = type(self).__name__
        if self.burn_in >= self.sequence_length:
            raise ValueError(f"{name}.burn_in ({self.burn_in}) must be less than "
                             f"sequence_length ({self.sequence_length}): the steps after the "
                             "burn-in are the ones trained on")
        if self.recurrent:
            trained = self.sequence_length - self.burn_in
            if self.n_step > trained:
                raise ValueError(f"{name}.n_step ({self.n_step}) must be at most "
                                 f"sequence_length - burn_in = {trained} with recurrent=True: "
                                 "an n-step window never runs past a sampled sequence")
            per_env = self.sequence_length + self.rollout_length
            if self.buffer_size // self.num_envs < per_env:
                raise ValueError(f"{name}.buffer_size ({self.buffer_size}) must hold at least "
                                 f"sequence_length + rollout_length = {per_env} steps of each "
                                 f"of the {self.num_envs} envs with recurrent=True")

    def hyperparams(self, **overrides: Any) -> DQNHyperparams:
        hp = self.Hyperparams(**overrides)
        check_hysteretic(self, hp)
        return hp


def check_hysteretic(config: DQNConfig, hp: DQNHyperparams) -> None:
    """``ValueError`` if a concrete ``hysteretic_beta`` below 1 meets a learner compiled
    without the hysteretic optimiser (``config.hysteretic`` False), which would ignore it."""
    beta = concrete_values(hp.hysteretic_beta)
    if not config.hysteretic and beta is not None and np.any(beta != 1.0):
        raise ValueError(f"hysteretic_beta={hp.hysteretic_beta!r} needs the learner config "
                         f"switch hysteretic=True ({type(config).__name__}(hysteretic=True), "
                         "--config hysteretic=true); without it the plain step ignores it")


@struct.dataclass
class DQNState:
    params: Any
    target_params: Any
    opt_state: Any
    buffer: Any
    rollout: RolloutState
    key: jax.Array
    update_step: jax.Array
    hp: DQNHyperparams


def hysteretic_adam(lr: jax.Array | float, max_grad_norm: jax.Array | float
                    ) -> optax.GradientTransformation:
    """Clipped Adam with two learning rates (see the module docstring).

    Its ``update`` takes a pair ``(weighted, plain)`` of gradient trees: the first moment
    follows the hysteretic-weighted gradient, the second moment (Adam's step-size scale)
    the plain one, and both are clipped by the factor that clips ``plain`` to global norm
    ``max_grad_norm``. Its state is that of ``chain(clip_by_global_norm, adam)``; with
    ``weighted == plain`` its arithmetic is that chain's (the learner runs the chain itself
    when ``hysteretic_beta == 1``: compiled in another program, the same arithmetic can
    round differently in the last bit).
    """
    clip = optax.clip_by_global_norm(max_grad_norm)
    adam = optax.adam(lr)
    b2, eps = 0.999, 1e-8  # optax.adam's defaults

    def init(params: Any) -> Any:
        return optax.chain(clip, adam).init(params)

    def hysteretic(weighted: Any, plain: Any, state: Any, params: Any) -> tuple[Any, Any]:
        clip_state, adam_state = state
        g_norm = optax.tree.norm(plain)
        trigger = jnp.squeeze(g_norm < max_grad_norm)

        def clipped(tree: Any) -> Any:  # optax.clip_by_global_norm's rule, plain's factor
            return jax.tree.map(
                lambda t: jax.lax.select(trigger, t, (t / g_norm.astype(t.dtype))
                                         * max_grad_norm), tree)

        weighted, plain = clipped(weighted), clipped(plain)
        step_w, state_w = adam.update(weighted, adam_state, params)
        _, state_p = adam.update(plain, adam_state, params)
        moments_w, moments_p = state_w[0], state_p[0]
        correction = 1.0 - b2 ** moments_w.count.astype(jnp.float32)

        def rescale(u: jax.Array, nu_w: jax.Array, nu_p: jax.Array) -> jax.Array:
            # adam's step is -lr m_hat / (sqrt(nu_w_hat) + eps); use the plain scale instead
            return u * ((jnp.sqrt(nu_w / correction) + eps)
                        / (jnp.sqrt(nu_p / correction) + eps))

        updates = jax.tree.map(rescale, step_w, moments_w.nu, moments_p.nu)
        moments = moments_w._replace(nu=moments_p.nu)
        return updates, (clip_state, (moments, *state_w[1:]))

    def update(grads: tuple[Any, Any], state: Any, params: Any = None) -> tuple[Any, Any]:
        return hysteretic(*grads, state, params)

    return optax.GradientTransformation(init, update)


def _optimizer(lr: jax.Array, max_grad_norm: jax.Array) -> optax.GradientTransformation:
    return hysteretic_adam(lr, max_grad_norm)


def _plain_optimizer(lr: jax.Array, max_grad_norm: jax.Array) -> optax.GradientTransformation:
    return optax.chain(optax.clip_by_global_norm(max_grad_norm), optax.adam(lr))


def make_network(config: DQNConfig, env: Env) -> GroupedApply | GroupedRecurrent:
    """The Q-network: per-group MLP mapping an observation to ``num_actions`` values; with
    ``config.recurrent`` a per-group ``Dense -> GRU -> MLP`` (``networks.GroupedRecurrent``),
    one hidden state ``(rnn_hidden,)`` per agent."""
    groups = agent_groups(env, config.share_params)
    if config.recurrent:
        return GroupedRecurrent(RecurrentMLP(config.hidden, config.rnn_hidden, env.num_actions),
                                groups, config.share_params)
    return GroupedApply(MLP(config.hidden, env.num_actions), groups, config.share_params)


QLoss = Callable[[Any, Any, dict[str, jax.Array], DQNHyperparams],
                 tuple[jax.Array, jax.Array]]
"""``loss(params, target_params, batch, hp) -> (prediction, target)``: the values being
learned and their TD targets, on a sampled batch whose fields are ``(B, n_step, ...)``
sequences (``(B, sequence_length, ...)`` with ``config.recurrent``; see ``make_q_learner``);
the learner regresses one towards the other (``td_gradients``)."""

#: a recurrent Q-network's step, ``(params, h, obs, start) -> (h', q)`` (as
#: ``GroupedRecurrent.step``): ``h`` ``(..., N, H)``, ``obs`` ``(..., N, D)``, ``start`` ``(...)``
QStep = Callable[[Any, jax.Array, jax.Array, jax.Array], tuple[jax.Array, jax.Array]]


def bootstrap_values(agent_q: Callable[[Any, jax.Array], jax.Array], params: Any,
                     target_params: Any, next_obs: jax.Array, next_action_mask: jax.Array,
                     double_dqn: bool) -> jax.Array:
    """Every agent's target-network value at its own greedy next action, ``(..., N)``.

    The greedy action ``a*_i = argmax_{legal a} Q_i(o'_i, a)`` uses the online network with
    ``double_dqn`` (the target network otherwise); the value is ``Q_target,i(o'_i, a*_i)``.
    ``agent_q(params, obs)`` maps ``(..., N, D)`` observations to ``(..., N, A)`` values.
    """
    q_next_target = agent_q(target_params, next_obs)
    chooser = agent_q(params, next_obs) if double_dqn else q_next_target
    return value_at_greedy(q_next_target, chooser, next_action_mask)


def value_at_greedy(q_target: jax.Array, chooser: jax.Array, action_mask: jax.Array
                    ) -> jax.Array:
    """``q_target`` ``(..., A)`` at the legal argmax of ``chooser`` ``(..., A)``: ``(...)``."""
    best = jnp.argmax(jnp.where(action_mask, chooser, -jnp.inf), axis=-1)
    return jnp.take_along_axis(q_target, best[..., None], axis=-1)[..., 0]


def unroll(step: QStep, params: Any, h0: jax.Array, obs: jax.Array, start: jax.Array
           ) -> tuple[jax.Array, jax.Array]:
    """``step`` along a leading time axis: ``obs`` ``(T, ..., N, D)`` and ``start`` ``(T, ...)``
    from ``h0`` ``(..., N, H)``. Returns the hidden state *after* every step ``(T, ..., N, H)``
    and the Q-values ``(T, ..., N, A)``."""
    def body(h: jax.Array, inputs: tuple[jax.Array, jax.Array]):
        h, q = step(params, h, *inputs)
        return h, (h, q)

    _, (hs, qs) = jax.lax.scan(body, h0, (obs, start))
    return hs, qs


def sequence_q_values(step: QStep, params: Any, target_params: Any,
                      batch: dict[str, jax.Array], burn_in: int, double_dqn: bool
                      ) -> tuple[jax.Array, jax.Array]:
    """The online Q-values and every agent's bootstrap value along sampled sequences.

    ``batch`` holds ``(B, L, ...)`` sequences with the hidden state ``h`` each step started
    from and its episode-start flag ``start`` (the rule: the module docstring's "Recurrent
    agents"). Online and target networks both run from the stored ``h`` of the first step,
    zeroed where ``start`` (inside the sequence too); the first ``burn_in`` steps only warm
    the hidden state, which then passes no gradient back. Returns, for the ``L - burn_in``
    steps after the burn-in, the online ``Q`` ``(B, L - B, N, A)`` and the value of each
    step's true next observation ``(B, L - B, N)``: ``Q_target`` at the greedy legal action
    (of the online network with ``double_dqn``), each network taking one more step on
    ``next_obs`` from its hidden state after the step, without a reset.
    """
    def time_major(x: jax.Array) -> jax.Array:
        return jnp.swapaxes(x, 0, 1)

    obs, start = time_major(batch["obs"]), time_major(batch["start"])
    h0 = batch["h"][:, 0]

    def run(p: Any) -> tuple[jax.Array, jax.Array]:
        h = h0
        if burn_in:
            hs, _ = unroll(step, p, h, obs[:burn_in], start[:burn_in])
            h = jax.lax.stop_gradient(hs[-1])  # R2D2: no gradient through the burn-in
        return unroll(step, p, h, obs[burn_in:], start[burn_in:])

    hs, q = run(params)
    target_hs, _ = run(jax.lax.stop_gradient(target_params))
    next_obs = time_major(batch["next_obs"])[burn_in:]
    no_start = jnp.zeros(next_obs.shape[:-2], bool)
    _, q_next_target = step(jax.lax.stop_gradient(target_params), target_hs, next_obs, no_start)
    if double_dqn:
        _, chooser = step(params, jax.lax.stop_gradient(hs), next_obs, no_start)
    else:
        chooser = q_next_target
    bootstrap = value_at_greedy(q_next_target, chooser,
                                time_major(batch["next_action_mask"])[burn_in:])
    return time_major(q), jax.lax.stop_gradient(time_major(bootstrap))


def sequence_nstep_targets(rewards: jax.Array, terminated: jax.Array, truncated: jax.Array,
                           bootstrap: jax.Array, gamma: jax.Array | float, n_step: int
                           ) -> jax.Array:
    """The n-step target of every step of ``(B, T, ...)`` sequences, ``(B, T, ...)``.

    Step ``t``'s window is ``t, ..., t + n_step - 1``, cut at the first episode end in it
    (``returns.nstep_targets``) and at the sequence's last step, which is treated like a
    truncation: the window bootstraps from that step's true next observation
    (``gamma^m (1 - terminated) bootstrap``, ``m`` the steps taken). So the last
    ``n_step - 1`` steps of a sequence get shorter targets rather than none.
    """
    t = rewards.shape[1]
    window = np.minimum(np.arange(t)[:, None] + np.arange(n_step)[None, :], t - 1)  # (T, n)
    last = np.arange(t) == t - 1
    ends = jnp.logical_or(truncated, last.reshape((1, t) + (1,) * (truncated.ndim - 2)))

    def per_step(*fields: jax.Array) -> tuple[jax.Array, ...]:  # (B, T, n, ...) each
        return tuple(x[:, window] for x in fields)

    targets = jax.vmap(jax.vmap(nstep_targets, in_axes=(0, 0, 0, 0, None)),
                       in_axes=(0, 0, 0, 0, None))
    return targets(*per_step(rewards, terminated, ends, bootstrap), gamma)


def sequence_td_terms(step: QStep, params: Any, target_params: Any,
                      batch: dict[str, jax.Array], gamma: jax.Array | float, n_step: int,
                      burn_in: int, double_dqn: bool) -> tuple[jax.Array, jax.Array]:
    """Recurrent IQL's ``(prediction, target)``, both ``(B, L - burn_in, N)``: every agent's
    ``Q(o_t, a_t)`` after the burn-in and its n-step target along the sequence
    (``sequence_q_values``, ``sequence_nstep_targets``)."""
    q, bootstrap = sequence_q_values(step, params, target_params, batch, burn_in, double_dqn)
    action = batch["action"][:, burn_in:]
    q_taken = jnp.take_along_axis(q, action[..., None], axis=-1)[..., 0]
    targets = sequence_nstep_targets(batch["reward"][:, burn_in:],
                                     batch["terminated"][:, burn_in:, None],
                                     batch["truncated"][:, burn_in:, None], bootstrap, gamma,
                                     n_step)
    return q_taken, targets


def td_loss(prediction: jax.Array, target: jax.Array, beta: jax.Array | float) -> jax.Array:
    """``mean(0.5 * w * (target - prediction)^2)``, ``target`` held fixed.

    ``w = beta`` where ``target < prediction`` (a negative TD error), else 1. Its gradient is
    the first-moment input of ``hysteretic_adam``; the weight alone would be cancelled by
    Adam (see the module docstring). ``beta = 1`` is the plain squared TD error, bit for bit.
    """
    target = jax.lax.stop_gradient(target)
    td = prediction - target
    weight = jax.lax.stop_gradient(jnp.where(target < prediction, beta, 1.0))
    return 0.5 * jnp.mean(weight * td * td)


def td_gradients(terms: Callable[[Any], tuple[jax.Array, jax.Array]], params: Any,
                 beta: jax.Array | float) -> tuple[jax.Array, jax.Array, tuple[Any, Any]]:
    """``(loss, mean prediction, (weighted, plain))`` for ``hysteretic_adam``.

    ``terms(params) -> (prediction, target)`` (the target is held fixed); ``loss`` is
    ``td_loss(prediction, target, beta)``, ``weighted`` its gradient and ``plain`` that of
    ``td_loss(..., 1)``: one forward pass, two backward passes through ``terms``.
    """
    prediction, backward, target = jax.vjp(terms, params, has_aux=True)
    target = jax.lax.stop_gradient(target)
    loss_value, weighted_ct = jax.value_and_grad(td_loss)(prediction, target, beta)
    plain_ct = jax.grad(td_loss)(prediction, target, 1.0)
    (weighted,) = backward(weighted_ct)
    (plain,) = backward(plain_ct)
    return loss_value, jnp.mean(prediction), (weighted, plain)


def make_buffer(config: DQNConfig) -> fbx.trajectory_buffer.TrajectoryBuffer:
    """The replay: one row of consecutive steps per env (``flashbax`` trajectory buffer,
    ``buffer_size // num_envs`` steps each), sampled as ``batch_size`` runs of ``n_step``
    consecutive steps of one env (``sequence_length`` with ``config.recurrent``) starting at
    any step (period 1)."""
    length = config.sequence_length if config.recurrent else config.n_step
    return fbx.make_trajectory_buffer(
        add_batch_size=config.num_envs, sample_batch_size=config.batch_size,
        sample_sequence_length=length, period=1, min_length_time_axis=length,
        max_length_time_axis=config.buffer_size // config.num_envs)


def make_q_learner(config: DQNConfig, env: Env, env_params: Any, *,
                   init_params: Callable[[jax.Array], Any],
                   agent_q: Callable[[Any, jax.Array], jax.Array] | None, loss: QLoss,
                   store_global_state: bool = False,
                   agent_q_step: QStep | None = None) -> Learner:
    """The value-based learner shared by IQL and value decomposition.

    What differs between them is passed in: ``init_params(key)`` builds the online
    parameters (the target starts as a copy), ``agent_q(params, obs)`` gives every agent's
    action values ``(..., N, A)`` for epsilon-greedy acting (with ``config.recurrent``,
    ``agent_q_step(params, h, obs, start) -> (h', q)`` does, carrying the hidden states
    ``(num_envs, N, rnn_hidden)`` in ``RolloutState.carry``), and ``loss`` is minimised on
    sampled ``n_step`` sequences (``sequence_length`` ones with ``config.recurrent``; its
    ``(prediction, target)`` pair is regressed with ``td_gradients`` and
    ``hysteretic_adam``). The rest is shared: the env batch, epsilon schedule, the
    ``flashbax`` buffer (``make_buffer``), the optimiser (clipped Adam with the hysteretic
    learning rates, the rate optionally annealed) and the target-network update. A batch
    holds ``obs``, ``action``, ``reward`` (per agent), ``terminated``, ``truncated``,
    ``next_obs``, ``next_action_mask``; with ``store_global_state``, ``global_state`` and
    ``next_global_state``; with ``config.recurrent``, ``start`` (the step begins an episode:
    the hidden state is zeroed before it) and ``h`` ``(N, rnn_hidden)`` (the acting network's
    hidden state before the step, before that reset).
    """
    if env.continuous_actions:
        raise ValueError(f"{env.name or type(env).__name__}: DQN needs discrete actions; "
                         "make the env with continuous_actions=False")
    if config.recurrent and agent_q_step is None:
        raise ValueError("make_q_learner: a recurrent config needs agent_q_step")
    venv = batch_env(env, config.num_envs)
    # the same optimiser state either way; the hysteretic one only where the config asks
    optimizer = optax.inject_hyperparams(_optimizer if config.hysteretic else _plain_optimizer)
    buffer = make_buffer(config)
    steps_per_update = config.rollout_length * config.num_envs
    # the first update after which learning_starts env steps are done (counted in updates:
    # an int32 count of env steps would overflow past 2**31 of them)
    first_learning_update = -(-config.learning_starts // steps_per_update)
    n, d, a = env.num_agents, env.obs_dim, env.num_actions

    def init(key: jax.Array, hp: DQNHyperparams) -> DQNState:
        check_hysteretic(config, hp)  # concrete hyperparameters only (not under jit)
        k_env, k_net, key = jax.random.split(key, 3)
        env_state, ts = venv.reset(k_env, env_params)
        params = init_params(k_net)
        opt_state = optimizer(lr=hp.lr, max_grad_norm=hp.max_grad_norm).init(params)
        item = {"obs": jnp.zeros((n, d), jnp.float32), "action": jnp.zeros((n,), jnp.int32),
                "reward": jnp.zeros((n,), jnp.float32), "terminated": jnp.zeros((), bool),
                "truncated": jnp.zeros((), bool), "next_obs": jnp.zeros((n, d), jnp.float32),
                "next_action_mask": jnp.ones((n, a), bool)}
        if store_global_state:
            item["global_state"] = jnp.zeros((env.state_dim,), jnp.float32)
            item["next_global_state"] = jnp.zeros((env.state_dim,), jnp.float32)
        if config.recurrent:
            item["start"] = jnp.zeros((), bool)
            item["h"] = jnp.zeros((n, config.rnn_hidden), jnp.float32)
            rollout = RolloutState(env_state, ts, jnp.zeros(
                (config.num_envs, n, config.rnn_hidden), jnp.float32))
        else:
            rollout = RolloutState(env_state, ts)
        return DQNState(params, params, opt_state, buffer.init(item), rollout, key,
                        jnp.zeros((), jnp.int32), hp)

    def learn(state: DQNState, key: jax.Array) -> tuple[DQNState, tuple[jax.Array, jax.Array]]:
        batch = buffer.sample(state.buffer, key).experience
        lr = state.hp.lr
        if config.anneal_lr:
            lr = lr * (1.0 - state.update_step / config.num_updates)
        # inject_hyperparams reads the learning rate from the optimiser state
        opt_state = state.opt_state._replace(
            hyperparams={**state.opt_state.hyperparams, "lr": jnp.asarray(lr, jnp.float32)})

        def terms(params: Any) -> tuple[jax.Array, jax.Array]:
            return loss(params, state.target_params, batch, state.hp)

        opt = optimizer(lr=lr, max_grad_norm=state.hp.max_grad_norm)
        if config.hysteretic:  # static: two backward passes for hysteretic_adam's moments
            loss_value, q_mean, grads = td_gradients(terms, state.params,
                                                     state.hp.hysteretic_beta)
        else:  # the plain squared TD error (hysteretic_beta is 1, checked at build)
            def td(params: Any) -> tuple[jax.Array, jax.Array]:
                prediction, target = terms(params)
                return (td_loss(prediction, target, state.hp.hysteretic_beta),
                        jnp.mean(prediction))

            (loss_value, q_mean), grads = jax.value_and_grad(td, has_aux=True)(state.params)
        updates, opt_state = opt.update(grads, opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return state.replace(params=params, opt_state=opt_state), (loss_value, q_mean)

    def update(state: DQNState) -> tuple[DQNState, dict[str, jax.Array]]:
        hp = state.hp
        key, k_roll, k_learn = jax.random.split(state.key, 3)
        epsilon = linear_schedule(hp.epsilon_start, hp.epsilon_end, hp.epsilon_decay_fraction,
                                  state.update_step / config.num_updates)

        def policy(key: jax.Array, ts: TimeStep):
            q = agent_q(state.params, ts.obs)
            return epsilon_greedy(key, q, ts.action_mask, epsilon), {}

        def recurrent_policy(key: jax.Array, ts: TimeStep, h: jax.Array):
            start = ts.done  # (B,) this observation begins an episode: the carry restarts
            h_next, q = agent_q_step(state.params, h, ts.obs, start)
            return (epsilon_greedy(key, q, ts.action_mask, epsilon), {"start": start, "h": h},
                    h_next)

        rollout, tr, info = collect(venv, env_params,
                                    recurrent_policy if config.recurrent else policy,
                                    state.rollout, k_roll, config.rollout_length)
        items = {"obs": tr.obs, "action": tr.action, "reward": tr.reward,
                 "terminated": tr.terminated, "truncated": tr.truncated,
                 "next_obs": tr.next_obs, "next_action_mask": tr.next_action_mask}
        if store_global_state:
            items.update(global_state=tr.global_state, next_global_state=tr.next_global_state)
        if config.recurrent:
            items.update(start=tr.extras["start"], h=tr.extras["h"])
        items = jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), items)  # (B, T, ...)
        state = state.replace(buffer=buffer.add(state.buffer, items), rollout=rollout, key=key)
        ready = buffer.can_sample(state.buffer) & (state.update_step + 1
                                                   >= first_learning_update)
        # float32: exact to 2**24 env steps, then rounded (never wraps like int32)
        env_steps = (state.update_step + 1).astype(jnp.float32) * steps_per_update

        def do_learn(state: DQNState):
            state, (loss_value, q_mean) = jax.lax.scan(
                learn, state, jax.random.split(k_learn, config.num_epochs))
            return state, jnp.mean(loss_value), jnp.mean(q_mean)

        def skip(state: DQNState):
            return state, jnp.zeros(()), jnp.zeros(())

        state, loss_value, q_mean = jax.lax.cond(ready, do_learn, skip, state)
        sync = (state.update_step + 1) % config.target_update_interval == 0
        target = jax.tree.map(
            lambda online, old: jnp.where(sync, hp.tau * online + (1.0 - hp.tau) * old, old),
            state.params, state.target_params)
        state = state.replace(target_params=target, update_step=state.update_step + 1)
        metrics = episode_metrics(info)
        metrics.update(loss=loss_value, q_mean=q_mean, epsilon=epsilon, learning=ready,
                       env_steps=env_steps, lr=state.opt_state.hyperparams["lr"])
        return state, metrics

    return Learner(init, update, make_train(init, update, config.num_updates))


def make_learner(config: DQNConfig, env: Env, env_params: Any) -> Learner:
    """Independent DQN on ``env`` (discrete actions); GRU agents with ``config.recurrent``."""
    net = make_network(config, env)

    def init_params(key: jax.Array) -> Any:
        return net.init(key, jnp.zeros((env.num_agents, env.obs_dim), jnp.float32))

    if config.recurrent:
        def sequence_loss(params: Any, target_params: Any, batch: dict[str, jax.Array],
                          hp: DQNHyperparams) -> tuple[jax.Array, jax.Array]:
            return sequence_td_terms(net.step, params, target_params, batch, hp.gamma,
                                     config.n_step, config.burn_in, config.double_dqn)

        return make_q_learner(config, env, env_params, init_params=init_params, agent_q=None,
                              loss=sequence_loss, agent_q_step=net.step)

    def loss(params: Any, target_params: Any, batch: dict[str, jax.Array],
             hp: DQNHyperparams) -> tuple[jax.Array, jax.Array]:
        q = net.apply(params, batch["obs"][:, 0])  # (B, N, A)
        q_taken = jnp.take_along_axis(q, batch["action"][:, 0, :, None], axis=-1)[..., 0]
        bootstrap = bootstrap_values(net.apply, params, target_params, batch["next_obs"],
                                     batch["next_action_mask"], config.double_dqn)
        targets = nstep_targets_batch(batch["reward"], batch["terminated"][..., None],
                                      batch["truncated"][..., None], bootstrap, hp.gamma)
        return q_taken, targets

    return make_q_learner(config, env, env_params, init_params=init_params,
                          agent_q=net.apply, loss=loss)


def make_policy(config: DQNConfig, env: Env, params: Any, greedy: bool = True,
                epsilon: float = 0.05) -> Policy:
    """The trained Q-network of ``params`` as a ``Policy``: greedy (ties broken at random),
    or epsilon-greedy with ``epsilon`` when ``greedy`` is False. A recurrent network's carry
    is its hidden state ``(N, rnn_hidden)`` per env (zeros at an episode start; reset by
    whoever steps the env, ``envs.reset_carry``)."""
    net = make_network(config, env)

    def pick(key: jax.Array, q: jax.Array, mask: jax.Array) -> jax.Array:
        if greedy:
            return masked_argmax(key, q, mask).astype(jnp.int32)
        return epsilon_greedy(key, q, mask, jnp.asarray(epsilon, jnp.float32))

    if config.recurrent:
        def act_recurrent(key: jax.Array, ts: TimeStep, carry: jax.Array
                          ) -> tuple[jax.Array, jax.Array]:
            carry, q = net.step(params, carry, ts.obs, jnp.zeros(ts.obs.shape[:-2], bool))
            return pick(key, q, ts.action_mask), carry

        return Policy(act_recurrent,
                      lambda batch=None: net.carry(() if batch is None else (batch,)),
                      name="dqn_recurrent")

    def act(key: jax.Array, ts: TimeStep) -> jax.Array:
        return pick(key, net.apply(params, ts.obs), ts.action_mask)

    return feed_forward(act, name="dqn")


def policy_params(state: DQNState) -> Any:
    """What ``make_policy`` needs from a learner state: the online network's parameters."""
    return state.params


Config = DQNConfig
Hyperparams = DQNHyperparams
