"""``cue-v1``: go to the landmark that was shown at the start (a task that needs memory).

N agents (default 2, discs of ``agent_size``) move with the MPE physics (``physics.py``; no
walls; agents push each other apart by the soft MPE contact, unpenalised) among K landmarks
(default 3, points that do not collide). At reset the agents are placed uniformly in
``[-1, 1]^2`` and one landmark, the **goal**, is drawn uniformly; it stays the goal for the
whole episode. Where the landmarks are is the constructor's ``landmarks`` option:

- ``"ring"`` (default): always at the same K places, evenly on a circle of radius
  ``ring_radius`` (a param, default 0.8) about the origin, the first straight up
  (angles ``90 + 360 k / K`` degrees). Which landmark pays is then all the cue tells, and the
  way there is a function of the remembered cue and the agent's own position, so a
  recurrent learner finds it in a few hundred thousand steps (``docs/results.md``);
- ``"random"``: drawn uniformly in ``[-1, 1]^2`` at every reset, like the agents. The way to
  the goal is then a product of the remembered cue and the landmarks seen (which of K
  relative positions to follow): a harder problem for a network to learn (recurrent MAPPO
  had not learnt it after 1 M steps).

Cue phase. For the first ``cue_steps`` steps (c, default 3) every agent's observation shows
the goal as a one-hot of size K, and the agents are **held at their starts**: the actions of
steps ``0 .. c-1`` move nothing (positions and velocities do not change; an invalid one is
still counted in ``info["invalid_actions"]``). From step c on the cue reads as zeros and the
agents move. The observation at
time ``t`` (``t = 0`` at reset, ``t`` steps taken) shows the cue iff ``t < c``, so the
agents act on c observations with the cue, and their first move is their action at ``t = c``.
Actions are the particle tasks' ``Discrete(5)`` moves (or ``[0, 1]^5`` with
``continuous_actions=True``).

Team reward, the same for every agent, with ``g`` the goal landmark::

    r = - mean_i ||p_i - g||

Episodes are truncated after ``max_steps`` (T, default 25); they never terminate. ``info``:
``goal_distance`` (``mean_i ||p_i - g||``, i.e. ``-r``) and ``at_goal`` (the fraction of
agents within ``goal_radius`` of the goal).

Observation of agent ``i`` (width ``5 + 3K``, 14 for K = 3)::

    [v_i, p_i, (l_k - p_i)_k, cue (K: one-hot of the goal while t < c, else zeros), t / T]

(teammates are not observed: the task is about memory, not coordination).

Global state (width ``4N + 3K + 1``): ``[all p (2N), all v (2N), all l (2K), one-hot of the
goal (K, at every step), t / T]``, so a centralised critic can value states after the cue.

Why a memoryless policy cannot do well. Take any policy whose actions at time ``t >= c``
are a function of the agents' current observations and of randomness drawn independently
of the goal (a feed-forward network, a script without a carry). The agents are held during
the cue, so at ``t = c`` the state (starts, zero velocities, landmarks) and every
observation are independent of the goal; the dynamics are deterministic, so by induction so
are all later positions. For each moving step the expected reward given the starts and the
landmarks is then ``-mean_i (1/K) sum_k ||p_i,t - l_k|| <= -D``, with ``D = min_x (1/K)
sum_k ||x - l_k||`` the mean distance of the landmarks from their geometric median: the best
such a team can do is to wait at that median. The rewards of steps ``1 .. c + 1`` are the
same for every policy (the agents are held, and positions advance with the old velocity,
zero at ``t = c``, so the first move shows at step ``c + 2``). So, with team return the sum
over the N agents, every memoryless team's expected return is at most::

    B = N * E[ - (c + 1) * mean_i ||s_i - g||  -  (T - c - 1) * D ]      (s_i: the starts)

while a team that remembers the cue can drive ``||p_i - g||`` towards 0. Holding the agents
is what makes this hold: an agent that could move while it sees the cue could store the cue
in its own body (start towards the goal and keep its heading, which its velocity shows).

Reference policies (below; the same steering for both, see ``_steer``):
``cue_memory_policy`` (recurrent: its carry keeps the goal it saw, and it heads for that
landmark) and ``cue_memoryless_policy`` (heads for the cued landmark while the cue is shown,
then for the geometric median of the landmarks: the best goal-independent place, above).
Measured by ``python -m experiments.reference --env cue-v1 --seeds 4 --episodes 250``
(1000 episodes of the default task, ring landmarks; team return = sum over the N = 2 agents,
mean ± 95 % CI over the 4 seeds; ``goal_distance`` and ``at_goal`` are episode means), and
with ``landmarks="random"`` (measured before the ring became the default)::

                 ring (default)                          random landmarks
    policy       team return    goal_dist.  at_goal    team return    goal_dist.  at_goal
    random       -54.3 ± 2.0    1.085       0.007      -54.8 ± 1.8    1.096       0.007
    memoryless   -43.5 ± 0.7    0.869       0.002      -36.6 ± 0.5    0.733       0.084
    memory       -23.3 ± 0.8    0.465       0.383      -23.7 ± 0.9    0.474       0.383

and the bound, the mean of ``memoryless_bound`` over 1000 resets (± 95 % half-width over
resets): ``B = -41.9 ± 0.1`` on the ring (``D`` = the ring's radius 0.8), ``-31.6 ± 0.5``
with random landmarks, by::

    python -c "import jax; from jaxmarl_coop.envs import make; \
    from jaxmarl_coop.envs.cue import memoryless_bound; env, p = make('cue-v1'); \
    print(jax.vmap(lambda k: memoryless_bound(env, env.reset(k, p)[0], p))(\
    jax.random.split(jax.random.PRNGKey(0), 1000)).mean())"

(``make('cue-v1', landmarks='random')`` for the other). So no memoryless team can expect
more than about -41.9 on the ring; the memoryless script gets within 2 of that (its agents
spend their first moves walking to the centre), and the memory policy is 19 above the
bound.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxmarl_coop.envs import physics
from jaxmarl_coop.envs.core import (
    Env,
    TimeStep,
    check_count,
    check_flag,
    check_param,
    check_param_types,
    concrete_values,
)
from jaxmarl_coop.envs.policy import Policy

#: Weiszfeld iterations of ``geometric_median`` for the memoryless policy (from the
#: centroid). Over 20,000 random triples in ``[-1, 1]^2`` the mean distance to the result is
#: above its minimum by 6e-6 on average and 2e-4 at worst (slowest where the median is a
#: landmark); 256 iterations (``memoryless_bound``) leave 3e-6 at worst.
MEDIAN_ITERATIONS = 32
BOUND_MEDIAN_ITERATIONS = 256
#: where the landmarks are (the constructor's ``landmarks``; the module docstring)
LANDMARK_LAYOUTS = ("ring", "random")


@struct.dataclass
class CueState:
    agent_pos: jax.Array  # (N, 2)
    agent_vel: jax.Array  # (N, 2)
    landmark_pos: jax.Array  # (K, 2)
    goal: jax.Array  # () int32, index of the goal landmark
    step: jax.Array  # () int32, steps taken this episode


@struct.dataclass
class CueParams:
    max_steps: int = 25
    #: the cue is shown, and the agents held, while ``t < cue_steps``
    cue_steps: int = 3
    agent_size: float = 0.05
    agent_accel: float = 5.0
    agent_mass: float = 1.0
    agent_max_speed: float = 1.0
    #: an agent this close to the goal counts as on it (``info["at_goal"]`` only)
    goal_radius: float = 0.1
    #: the landmarks' circle (``landmarks="ring"`` only)
    ring_radius: float = 0.8
    world: physics.WorldParams = physics.WorldParams()

    def __post_init__(self) -> None:
        check_param_types(self)
        check_param("max_steps", self.max_steps, low=1)
        check_param("cue_steps", self.cue_steps, low=0)
        steps = concrete_values(self.max_steps)
        if steps is not None:  # the agents must get at least one move
            check_param("cue_steps (must leave the agents a move before max_steps)",
                        self.cue_steps, high=float(np.min(steps)) - 1.0)
        for name in ("agent_size", "agent_mass"):
            check_param(name, getattr(self, name), low=0.0, low_inclusive=False)
        check_param("agent_accel", self.agent_accel, low=0.0)
        check_param("agent_max_speed", self.agent_max_speed, low=0.0, low_inclusive=False,
                    allow_inf=True)
        check_param("goal_radius", self.goal_radius, low=0.0)
        check_param("ring_radius", self.ring_radius, low=0.0)


class Cue(Env[CueState, CueParams]):
    """Agents must reach the landmark cued at the start, after the cue has gone."""

    def __init__(self, num_agents: int = 2, num_landmarks: int = 3, landmarks: str = "ring",
                 continuous_actions: bool = False, debug: bool = False) -> None:
        self.num_agents = check_count("num_agents", num_agents, 1)
        physics.check_num_discs("cue", num_agents=self.num_agents)
        self.num_landmarks = check_count("num_landmarks", num_landmarks, 2)
        if landmarks not in LANDMARK_LAYOUTS:
            raise ValueError(f"landmarks must be one of {LANDMARK_LAYOUTS}, got {landmarks!r}")
        self.landmarks = landmarks
        self.continuous_actions = check_flag("continuous_actions", continuous_actions)
        self.debug = check_flag("debug", debug)
        n, k = self.num_agents, self.num_landmarks
        self.num_actions = physics.NUM_MOVE_ACTIONS
        self.obs_dim = 5 + 3 * k
        self.state_dim = 4 * n + 3 * k + 1
        self.agent_names = tuple(f"agent_{i}" for i in range(n))
        self.teams = {"agents": tuple(range(n))}

    def default_params(self) -> CueParams:
        return CueParams()

    def reset_env(self, key: jax.Array, params: CueParams) -> tuple[CueState, TimeStep]:
        n, k = self.num_agents, self.num_landmarks
        u = jax.random.uniform(key, (2 * (n + k) + 1,), jnp.float32)  # one draw for it all
        xy = (u[:-1] * 2.0 - 1.0).reshape(n + k, 2)
        goal = jnp.minimum((u[-1] * k).astype(jnp.int32), k - 1)
        landmarks = xy[n:] if self.landmarks == "random" else ring_landmarks(k, params)
        state = CueState(agent_pos=xy[:n], agent_vel=jnp.zeros((n, 2), jnp.float32),
                         landmark_pos=landmarks, goal=goal, step=jnp.zeros((), jnp.int32))
        reward, info = self._reward(state, params)
        return state, self._timestep(state, jnp.zeros_like(reward), info, params)

    def step_env(self, key: jax.Array, state: CueState, actions: jax.Array,
                 params: CueParams) -> tuple[CueState, TimeStep]:
        del key  # the dynamics are deterministic
        pos, vel = physics.identical_agents_step(state.agent_pos, state.agent_vel, actions,
                                                 self.continuous_actions, params)
        held = state.step < params.cue_steps  # the cue phase: nothing moves
        state = state.replace(agent_pos=jnp.where(held, state.agent_pos, pos),
                              agent_vel=jnp.where(held, state.agent_vel, vel),
                              step=state.step + 1)
        reward, info = self._reward(state, params)
        return state, self._timestep(state, reward, info, params)

    def render(self, state: CueState, params: CueParams | None = None, *,
               size: int | None = None) -> np.ndarray:
        """Agents, landmarks (grey dots) and the goal (a star with a dashed circle of
        ``goal_radius``); see ``Env``."""
        from jaxmarl_coop.envs import render

        state, params, title = render.frame_setup(self, state, params)
        return render.draw_particles(
            state.agent_pos, float(params.agent_size), landmark_pos=state.landmark_pos,
            target_pos=state.landmark_pos[int(state.goal)],
            capture_radius=float(params.goal_radius) or None, title=title, size=size)

    # ----- pieces -----------------------------------------------------------------------
    def _reward(self, state: CueState, params: CueParams
                ) -> tuple[jax.Array, dict[str, jax.Array]]:
        goal = self._goal_one_hot(state) @ state.landmark_pos  # (2,), no gather
        delta = state.agent_pos - goal
        distance = jnp.sqrt(jnp.sum(delta * delta, axis=-1))  # (N,)
        mean_distance = jnp.mean(distance)
        info = {"goal_distance": mean_distance,
                "at_goal": jnp.mean((distance <= params.goal_radius).astype(jnp.float32))}
        return jnp.full((self.num_agents,), -mean_distance, jnp.float32), info

    def _goal_one_hot(self, state: CueState) -> jax.Array:
        return (jnp.arange(self.num_landmarks) == state.goal).astype(jnp.float32)

    def observations(self, state: CueState, params: CueParams) -> jax.Array:
        """``(N, obs_dim)`` float32, laid out as in the module docstring; the cue columns
        are the goal's one-hot iff ``state.step < cue_steps``, else zeros."""
        n = self.num_agents
        pos = state.agent_pos
        landmarks = (state.landmark_pos[None, :, :] - pos[:, None, :]).reshape(n, -1)
        shown = (state.step < params.cue_steps).astype(jnp.float32)
        cue = jnp.broadcast_to(self._goal_one_hot(state) * shown, (n, self.num_landmarks))
        clock = jnp.full((n, 1), state.step / params.max_steps, jnp.float32)
        return jnp.concatenate([state.agent_vel, pos, landmarks, cue, clock], axis=-1)

    def _timestep(self, state: CueState, reward: jax.Array, info: dict[str, jax.Array],
                  params: CueParams) -> TimeStep:
        global_state = jnp.concatenate([
            state.agent_pos.reshape(-1), state.agent_vel.reshape(-1),
            state.landmark_pos.reshape(-1), self._goal_one_hot(state),
            jnp.reshape(state.step / params.max_steps, (1,)).astype(jnp.float32)])
        return TimeStep(obs=self.observations(state, params), action_mask=self.all_legal_mask(),
                        global_state=global_state, reward=reward,
                        terminated=jnp.zeros((), bool),
                        truncated=state.step >= params.max_steps, info=info)


def ring_landmarks(num_landmarks: int, params: CueParams) -> jax.Array:
    """``landmarks="ring"``: ``(K, 2)`` places evenly on the circle of ``params.ring_radius``
    about the origin, the first straight up (angles ``90 + 360 k / K`` degrees)."""
    angles = np.pi / 2 + 2 * np.pi * np.arange(num_landmarks) / num_landmarks
    unit = jnp.asarray(np.stack([np.cos(angles), np.sin(angles)], axis=-1), jnp.float32)
    return unit * jnp.asarray(params.ring_radius, jnp.float32)


# ----- reference policies -------------------------------------------------------------------
def geometric_median(points: jax.Array, iterations: int = MEDIAN_ITERATIONS) -> jax.Array:
    """The point minimising the summed distance to ``points`` (``(..., K, 2)`` -> ``(..., 2)``),
    by ``iterations`` Weiszfeld steps from the centroid (a step's distances are floored at
    1e-6, so an iterate on a landmark stays finite)."""

    def weiszfeld(x: jax.Array, _: Any) -> tuple[jax.Array, None]:
        delta = points - x[..., None, :]
        weight = 1.0 / jnp.maximum(jnp.sqrt(jnp.sum(delta * delta, axis=-1)), 1e-6)
        return jnp.sum(points * weight[..., None], axis=-2) / jnp.sum(weight, axis=-1,
                                                                       keepdims=True), None

    median, _ = jax.lax.scan(weiszfeld, jnp.mean(points, axis=-2), None, length=iterations)
    return median


def memoryless_bound(env: Cue, state: CueState, params: CueParams) -> jax.Array:
    """The most a memoryless team can expect to return (summed over agents and steps) from
    the starts and landmarks of a reset ``state``, over the goal drawn uniformly (the module
    docstring's argument)::

        N * ( -(c + 1) * mean_i (1/K) sum_k ||s_i - l_k||  -  (T - c - 1) * D )

    with ``D`` the landmarks' mean distance from their geometric median
    (``BOUND_MEDIAN_ITERATIONS`` Weiszfeld steps: ``D`` a few 1e-6 too large at worst).
    Its mean over resets is the bound ``B``. ``state`` is one env's (no batch axis); vmap
    it for many.
    """
    if not isinstance(env, Cue):
        raise TypeError(f"memoryless_bound needs a cue-v1 env (Cue), got {env!r}")
    landmarks = state.landmark_pos
    _, start = physics.pair_distances(state.agent_pos, landmarks)  # (N, K)
    median = geometric_median(landmarks, BOUND_MEDIAN_ITERATIONS)
    spread = jnp.mean(jnp.sqrt(jnp.sum((landmarks - median) ** 2, axis=-1)))
    held = params.cue_steps + 1  # the rewards no policy changes
    return env.num_agents * (-held * jnp.mean(start)
                             - (params.max_steps - held) * spread).astype(jnp.float32)


def _steer(env: Cue, params: CueParams, vel: jax.Array, to_point: jax.Array) -> jax.Array:
    """Each agent's move towards a point ``to_point`` away (``(N, 2)``; velocities ``vel``):
    the move that puts it nearest to the point two steps from now. A move ``u`` gives the
    velocity ``v' = (1 - damping) v + dt accel u / mass`` (clamped to ``agent_max_speed``),
    and positions advance with the old velocity, so the agent will be ``dt (v + v')`` from
    where it is (contact forces ignored). Ties go to the lowest action (the no-op first).
    Of the lookaheads ``dt v + beta v'`` with beta from ``dt`` to ``dt / damping`` (where
    it would stop, coasting), ``beta = dt`` reached the goal soonest (default task, 500
    episodes: mean goal distance summed over the episode 11.9, against 12.3 for coasting).
    """
    world = params.world
    directions = jnp.asarray(physics.DISCRETE_DIRECTIONS)  # (5, 2)
    new_vel = ((1.0 - world.damping) * vel[:, None, :]
               + world.dt * params.agent_accel / params.agent_mass * directions[None])
    speed = jnp.sqrt(jnp.sum(new_vel * new_vel, axis=-1, keepdims=True))
    new_vel = jnp.where(speed > params.agent_max_speed,
                        new_vel / jnp.maximum(speed, 1e-12) * params.agent_max_speed, new_vel)
    ahead = world.dt * (vel[:, None, :] + new_vel)  # (N, 5, 2)
    miss = jnp.sum((to_point[:, None, :] - ahead) ** 2, axis=-1)
    choice = jnp.argmin(miss, axis=-1).astype(jnp.int32)
    if env.continuous_actions:  # the same move as a [0, 1]^5 vector (a[0] is unused)
        return (jnp.arange(physics.NUM_MOVE_ACTIONS) == choice[:, None]).astype(jnp.float32)
    return choice


def _cue_policy(env: Cue, params: CueParams | None, remember: bool) -> Policy:
    if not isinstance(env, Cue):
        raise TypeError(f"the cue reference policies need a cue-v1 env (Cue), got {env!r}")
    params = env.default_params() if params is None else params
    n, k = env.num_agents, env.num_landmarks

    def initial_carry(batch: int | None = None) -> jax.Array:
        return jnp.full((n,) if batch is None else (batch, n), -1, jnp.int32)

    def act(key: jax.Array, timestep: TimeStep, carry: Any) -> tuple[jax.Array, Any]:
        del key
        obs = timestep.obs
        vel, to_landmarks = obs[:, 0:2], obs[:, 4:4 + 2 * k].reshape(n, k, 2)
        cue = obs[:, 4 + 2 * k:4 + 3 * k]
        seen = jnp.where(jnp.any(cue > 0, axis=-1), jnp.argmax(cue, axis=-1), -1)
        goal = jnp.where(seen >= 0, seen, carry) if remember else seen  # (N,), -1: unknown
        one_hot = (jnp.arange(k) == goal[:, None]).astype(jnp.float32)  # (N, K)
        to_goal = jnp.einsum("nk,nkd->nd", one_hot, to_landmarks)
        # the median of the landmarks relative to the agent (translation-equivariant)
        to_median = geometric_median(to_landmarks)
        to_point = jnp.where((goal >= 0)[:, None], to_goal, to_median)
        actions = _steer(env, params, vel, to_point)
        return actions, (goal if remember else carry)

    if remember:
        return Policy(act, initial_carry, name="cue_memory")
    return Policy(act, name="cue_memoryless")


def cue_memory_policy(env: Cue, params: CueParams | None = None) -> Policy:
    """Recurrent reference: each agent remembers the goal the cue showed it (its carry,
    ``(N,)`` int32 per env, ``-1`` before any cue: ``initial_carry``) and steers for that
    landmark (``_steer``); an agent that has seen no cue (``cue_steps = 0``) steers for the
    landmarks' geometric median, as the memoryless policy does.

    ``params`` (default: the env's defaults) give the physics the steering predicts with.
    """
    return _cue_policy(env, params, remember=True)


def cue_memoryless_policy(env: Cue, params: CueParams | None = None) -> Policy:
    """Feed-forward reference: steers for the cued landmark while the cue is shown (the
    agents are held then, so this moves nothing), and afterwards for the geometric median
    of the landmarks, the goal-independent place nearest to the goal on average (the
    module docstring's bound ``B``)."""
    return _cue_policy(env, params, remember=False)
