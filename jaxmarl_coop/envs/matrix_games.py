"""Repeated two-player matrix games: ``climbing-v1``, ``penalty-v1``, ``prisoners-dilemma-v1``.

Two agents play the same one-shot game ``max_steps`` (25) times; the episode is truncated
after the last round and never terminates. Actions are discrete only (``Discrete(A)`` per
agent, every action legal); ``continuous_actions=True`` is a ``ValueError``. Rows are agent
0's action, columns agent 1's.

Invalid actions (outside ``[0, A)``): a matrix game has no no-op, so an invalid action gets
the game's worst outcome (``Env.prepare_actions``; counted in ``info["invalid_actions"]``).
In a common-payoff game, if either agent's action is invalid both get the table's minimum
(climbing -30, penalty ``min(k, 0)``). In the prisoner's dilemma an invalid agent gets the
smallest of its four payoffs, and a valid partner gets its worst payoff given its own
action, as if the invalid agent had played the action worst for it (defection, when
T > R > P > S). ``optimal`` and ``mutual_cooperation`` are 0 on such a round, and the
history observation after it is the first round's (slot 0: no valid joint action to recall).

``climbing-v1`` (Claus & Boutilier 1998), common payoff, A = 3, optimum (0, 0) = 11::

          0    1    2
    0 [  11  -30    0 ]
    1 [ -30    7    6 ]
    2 [   0    0    5 ]

``penalty-v1`` (Claus & Boutilier 1998), common payoff, A = 3, with the miscoordination
penalty ``k <= 0`` a traced param (default -25); optima (0, 0) and (2, 2) = 10::

          0    1    2
    0 [  10    0    k ]
    1 [   0    2    0 ]
    2 [   k    0   10 ]

``prisoners-dilemma-v1``, general sum, A = 2 (0 = cooperate, 1 = defect); each agent gets
its own payoff, from the params ``reward`` R = 3, ``sucker`` S = 0, ``temptation`` T = 5 and
``punishment`` P = 1 (any finite values; a dilemma when T > R > P > S)::

    (agent 0, agent 1)     C         D
            C          (R, R)    (S, T)
            D          (T, S)    (P, P)

In the common-payoff games both agents get the same reward, shape (2,). Every game has the
param ``reward_noise_std`` σ (default 0, the deterministic game): ``σ · ε`` with
``ε ~ N(0, 1)`` is added to each reward — one draw shared by both agents in a common-payoff
game (the payoff stays common), one draw per agent in the prisoner's dilemma. Stochastic
rewards let a learner's robustness to noise be told apart from its coordination.

Observation (the same for both agents; ``global_state`` is that observation):

- ``history=False`` (default): the game is stateless, ``obs = [1.0]`` (``obs_dim`` 1);
- ``history=True``: a one-hot of width ``A² + 1``: slot 0 on the first round, else slot
  ``1 + a_0 · A + a_1`` for the previous round's joint action (agent 0's action first, for
  both agents).

Tabular index (``obs_index``): 0 when stateless (1 index), else the hot slot (``A² + 1``).
``info``: ``payoff`` (the mean reward over the two agents, noise included) and, in the
common-payoff games, ``optimal`` (1.0 if the joint action maximises the noise-free common
payoff), in the prisoner's dilemma ``mutual_cooperation`` (1.0 for (C, C)); all 0 after
``reset``.
"""

from __future__ import annotations

from typing import ClassVar, TypeVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxmarl_coop.envs.core import (
    Env,
    TimeStep,
    check_flag,
    check_obs_width,
    check_param,
    check_param_types,
)

CLIMBING_PAYOFF = np.array([[11.0, -30.0, 0.0], [-30.0, 7.0, 6.0], [0.0, 0.0, 5.0]],
                           np.float32)
PENALTY_PAYOFF_WITHOUT_K = np.array([[10.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 10.0]],
                                    np.float32)
PENALTY_K_CELLS = np.array([[0.0, 0.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]], np.float32)


@struct.dataclass
class MatrixGameState:
    last_actions: jax.Array  # (2,) int32, the previous round's joint action (0s before it;
    # INVALID_ACTION where an agent's action was invalid)
    step: jax.Array  # () int32, rounds played this episode


@struct.dataclass
class ClimbingParams:
    max_steps: int = 25
    reward_noise_std: float = 0.0

    def __post_init__(self) -> None:
        check_param_types(self)
        check_param("max_steps", self.max_steps, low=1)
        check_param("reward_noise_std", self.reward_noise_std, low=0.0)


@struct.dataclass
class PenaltyParams:
    max_steps: int = 25
    reward_noise_std: float = 0.0
    #: payoff of the miscoordinated joint actions (0, 2) and (2, 0)
    k: float = -25.0

    def __post_init__(self) -> None:
        check_param_types(self)
        check_param("max_steps", self.max_steps, low=1)
        check_param("reward_noise_std", self.reward_noise_std, low=0.0)
        check_param("k", self.k, high=0.0)


@struct.dataclass
class PrisonersDilemmaParams:
    max_steps: int = 25
    reward_noise_std: float = 0.0
    reward: float = 3.0  # R: both cooperate
    sucker: float = 0.0  # S: I cooperate, the other defects
    temptation: float = 5.0  # T: I defect, the other cooperates
    punishment: float = 1.0  # P: both defect

    def __post_init__(self) -> None:
        check_param_types(self)
        check_param("max_steps", self.max_steps, low=1)
        check_param("reward_noise_std", self.reward_noise_std, low=0.0)
        for name in ("reward", "sucker", "temptation", "punishment"):
            check_param(name, getattr(self, name))


P = TypeVar("P", ClimbingParams, PenaltyParams, PrisonersDilemmaParams)  # the game's params


class MatrixGame(Env[MatrixGameState, P]):
    """A repeated two-player matrix game; subclasses give the payoff tables and the metric.

    Subclasses set ``game_actions`` (A), ``common_payoff`` and implement ``default_params``,
    ``payoff_tables`` and ``outcome_metric``.
    """

    game_actions: ClassVar[int]
    common_payoff: ClassVar[bool] = True
    noop_action = None  # every action pays something: invalid ones get the worst outcome
    #: names of the actions in pictures (None: their numbers)
    action_labels: ClassVar[tuple[str, ...] | None] = None

    def __init__(self, history: bool = False, continuous_actions: bool = False,
                 debug: bool = False) -> None:
        if check_flag("continuous_actions", continuous_actions):
            raise ValueError(f"{type(self).__name__} supports discrete actions only, got "
                             f"continuous_actions={continuous_actions!r}")
        self.history = check_flag("history", history)
        self.continuous_actions = False
        self.debug = check_flag("debug", debug)
        a = self.game_actions
        self.num_agents = 2
        self.num_actions = a
        self.obs_dim = a * a + 1 if self.history else 1
        self.state_dim = self.obs_dim
        self.num_obs_indices = self.obs_dim
        self.agent_names = ("agent_0", "agent_1")
        self.teams = ({"agents": (0, 1)} if self.common_payoff
                      else {"agent_0": (0,), "agent_1": (1,)})

    # ----- to implement -----------------------------------------------------------------
    def payoff_tables(self, params: P) -> jax.Array:
        """``(2, A, A)`` float32: ``tables[i, a_0, a_1]`` is agent i's noise-free payoff."""
        raise NotImplementedError

    def outcome_metric(self, actions: jax.Array, params: P) -> tuple[str, jax.Array]:
        """The game's own ``info`` entry: its name and its value (float32 scalar)."""
        raise NotImplementedError

    # ----- contract ---------------------------------------------------------------------
    def reset_env(self, key: jax.Array, params: P) -> tuple[MatrixGameState, TimeStep]:
        del key  # the first round is always the same
        state = MatrixGameState(last_actions=jnp.zeros((2,), jnp.int32),
                                step=jnp.zeros((), jnp.int32))
        name, _ = self.outcome_metric(jnp.zeros((2,), jnp.int32), params)
        zero = jnp.zeros((), jnp.float32)
        return state, self._timestep(state, jnp.zeros((2,), jnp.float32),
                                     {"payoff": zero, name: zero}, params)

    def step_env(self, key: jax.Array, state: MatrixGameState, actions: jax.Array,
                 params: P) -> tuple[MatrixGameState, TimeStep]:
        tables = self.payoff_tables(params)
        reward = self.payoffs(tables, actions)  # (2,)
        draws = 1 if self.common_payoff else 2
        noise = jax.random.normal(key, (draws,), jnp.float32) * params.reward_noise_std
        reward = (reward + noise).astype(jnp.float32)
        name, value = self.outcome_metric(jnp.maximum(actions, 0), params)
        value = jnp.where(jnp.any(actions < 0), 0.0, value).astype(jnp.float32)
        info = {"payoff": jnp.mean(reward), name: value}
        state = MatrixGameState(last_actions=actions, step=state.step + 1)
        return state, self._timestep(state, reward, info, params)

    def payoffs(self, tables: jax.Array, actions: jax.Array) -> jax.Array:
        """``(2,)`` noise-free rewards of a joint action, ``INVALID_ACTION`` (-1) for an
        invalid agent's action (the module docstring says what that pays)."""
        invalid = actions < 0  # INVALID_ACTION
        safe = jnp.maximum(actions, 0)
        reward = tables[:, safe[0], safe[1]]
        if self.common_payoff:
            return jnp.where(jnp.any(invalid), jnp.min(tables[0]), reward)
        # agent i's worst payoff over the other's actions, given its own (a valid partner's)
        worst_given_own = jnp.stack([jnp.min(tables[0][safe[0], :]),
                                     jnp.min(tables[1][:, safe[1]])])
        worst = jnp.min(tables, axis=(1, 2))
        partner_invalid = invalid[::-1]
        return jnp.where(invalid, worst, jnp.where(partner_invalid, worst_given_own, reward))

    def render(self, state: MatrixGameState, params: P | None = None, *,
               size: int | None = None) -> np.ndarray:
        """The noise-free payoff matrix with the last round's joint action outlined (none
        before the first round); see ``Env``."""
        from jaxmarl_coop.envs import render

        name = self.name or type(self).__name__
        params = self.default_params() if params is None else params
        state = render.host_state(name, state)
        tables = np.asarray(self.payoff_tables(params))
        rounds = int(state.step)
        title = f"{name}   round {rounds}/{int(params.max_steps)}"
        last = None
        if rounds > 0:
            last = np.asarray(state.last_actions)
            payoff = np.asarray(self.payoffs(jnp.asarray(tables), jnp.asarray(last)))
            shown = f"{payoff[0]:g}" if self.common_payoff else f"{payoff[0]:g}, {payoff[1]:g}"
            played = ", ".join(str(a) if a >= 0 else "invalid" for a in last)
            title += f"\nlast joint action ({played}): payoff {shown}"
            if np.any(last < 0):
                last = None  # no cell was played
        return render.draw_payoff_table(tables, last, action_labels=self.action_labels, title=title,
                                        size=size)

    def observations(self, state: MatrixGameState) -> jax.Array:
        """``(2, obs_dim)``: ``[1.0]``, or the one-hot history slot (module docstring)."""
        if not self.history:
            return jnp.ones((2, 1), jnp.float32)
        a = self.game_actions
        recall = (state.step > 0) & jnp.all(state.last_actions >= 0)
        slot = jnp.where(recall, 1 + state.last_actions[0] * a + state.last_actions[1], 0)
        return jnp.broadcast_to(jax.nn.one_hot(slot, self.obs_dim, dtype=jnp.float32),
                                (2, self.obs_dim))

    def obs_index(self, obs: jax.Array) -> jax.Array:
        """``(..., 2)`` int32: 0 when stateless, else the hot slot of the history one-hot."""
        obs = jnp.asarray(obs)
        check_obs_width(self, obs)
        if not self.history:
            return jnp.zeros(obs.shape[:-1], jnp.int32)
        return jnp.argmax(obs[..., :self.obs_dim], axis=-1).astype(jnp.int32)

    def _timestep(self, state: MatrixGameState, reward: jax.Array,
                  info: dict[str, jax.Array], params: P) -> TimeStep:
        obs = self.observations(state)
        return TimeStep(obs=obs, action_mask=self.all_legal_mask(), global_state=obs[0],
                        reward=reward, terminated=jnp.zeros((), bool),
                        truncated=state.step >= params.max_steps, info=info)


def _common_optimal(env: MatrixGame, actions: jax.Array, params: P) -> jax.Array:
    team = env.payoff_tables(params)[0]
    return (team[actions[0], actions[1]] >= jnp.max(team)).astype(jnp.float32)


class Climbing(MatrixGame[ClimbingParams]):
    """The climbing game: the optimum (0, 0) sits next to the worst penalties."""

    game_actions = 3

    def default_params(self) -> ClimbingParams:
        return ClimbingParams()

    def payoff_tables(self, params: ClimbingParams) -> jax.Array:
        return jnp.broadcast_to(jnp.asarray(CLIMBING_PAYOFF), (2, 3, 3))

    def outcome_metric(self, actions: jax.Array, params: ClimbingParams
                       ) -> tuple[str, jax.Array]:
        return "optimal", _common_optimal(self, actions, params)


class Penalty(MatrixGame[PenaltyParams]):
    """The penalty game: two optima, miscoordinating between them costs ``k``."""

    game_actions = 3

    def default_params(self) -> PenaltyParams:
        return PenaltyParams()

    def payoff_tables(self, params: PenaltyParams) -> jax.Array:
        k = jnp.asarray(params.k, jnp.float32)
        table = jnp.asarray(PENALTY_PAYOFF_WITHOUT_K) + k * jnp.asarray(PENALTY_K_CELLS)
        return jnp.broadcast_to(table, (2, 3, 3))

    def outcome_metric(self, actions: jax.Array, params: PenaltyParams
                       ) -> tuple[str, jax.Array]:
        return "optimal", _common_optimal(self, actions, params)


class PrisonersDilemma(MatrixGame[PrisonersDilemmaParams]):
    """The iterated prisoner's dilemma (0 = cooperate, 1 = defect), each agent its payoff."""

    game_actions = 2
    common_payoff = False
    action_labels = ("C", "D")

    def default_params(self) -> PrisonersDilemmaParams:
        return PrisonersDilemmaParams()

    def payoff_tables(self, params: PrisonersDilemmaParams) -> jax.Array:
        # own[a_me, a_other]; agent 1's table is its transpose in (a_0, a_1) order
        own = jnp.stack([jnp.stack([params.reward, params.sucker]),
                         jnp.stack([params.temptation, params.punishment])]
                        ).astype(jnp.float32)
        return jnp.stack([own, own.T])

    def outcome_metric(self, actions: jax.Array, params: PrisonersDilemmaParams
                       ) -> tuple[str, jax.Array]:
        return "mutual_cooperation", jnp.all(actions == 0).astype(jnp.float32)
