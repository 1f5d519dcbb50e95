"""``load-balancing-v1``: dispatchers route arriving jobs to servers of unequal speed.

K dispatchers (``num_dispatchers``, default 3) route jobs to M servers (``num_servers``,
default 4). Server ``m`` keeps a FIFO backlog ``q_m`` of work units, holds at most
``queue_capacity`` C (default 20) and serves ``service_rate[m]`` μ_m units per step (an
``(M,)`` param; default evenly spread over [1, 3], i.e. ``(1, 5/3, 7/3, 3)`` for M = 4, and
2 for M = 1).
Dispatcher ``i`` holds at most one pending job of size ``s_i`` (0: none). Its action is
``Discrete(M)``: the server to send that job to; without a job the action is ignored (every
action stays legal). There is no no-op: an invalid action (outside ``[0, M)``, counted in
``info["invalid_actions"]``) sends the job where it would wait longest, the server with the
largest ``(q_m + s_i) / μ_m`` at its turn (ties: the lowest index), so it is dropped if it does
not fit there. That is what one valid action does, so an invalid action never earns more
than the best valid one (dropping the job outright could: a job that is admitted can crowd
out several later ones). One step, in this order:

1. Admission, in dispatcher order 0, 1, …: a job of size ``s_i > 0`` sent to server ``a_i``
   joins its queue if ``q_{a_i} + s_i <= C`` (counting the jobs admitted before it this
   step), else it is dropped whole.
2. Service: each server serves ``min(q_m, μ_m)`` units; ``q_m <- q_m - min(q_m, μ_m)``.
3. Arrivals: each dispatcher independently gets a new job with probability
   ``arrival_prob`` (default 0.8), of size uniform on ``{1, …, max_job_size}`` (default 5).

With the defaults the offered load is ``K · 0.8 · 3 = 7.2`` units per step against a total
service rate of 8 (utilisation 0.9): sending work to the slow servers as often as to the
fast ones (random or round-robin routing) overloads them, so queues fill up and jobs drop.

Team reward, the same for every agent, with ``q'`` the backlog after service::

    r = - Σ_m q'_m / Σ_m μ_m  -  drop_penalty · #dropped jobs

The first term is the backlog in steps of the whole cluster's service (by Little's law it
grows with the mean job delay); ``drop_penalty`` defaults to 1.

Observation of dispatcher ``i`` (width ``3M + 3``; work in units of C)::

    [q̃_m / C  (M: queues as they were info_delay steps ago),
     μ_m / max_m μ_m  (M: relative speeds),
     s_i / C,  1[s_i > 0],
     one-hot of the server dispatcher i last sent a job to (M),
     t / max_steps]

``info_delay`` (param, default 2) is at most ``max_delay`` (static, default 8: the history
kept in the state; a larger concrete value is a ``ValueError``, a traced one acts as
``max_delay``); before the first step the queues were empty. The "last server"
starts at ``(i - 1) mod M``, so round-robin dispatcher ``i`` starts at server ``i``.
Global state (width ``2M + K + 1``): ``[q_m / C (true, now), μ_m / max μ, s_k / C for every
dispatcher k, t / max_steps]``. ``reset`` starts with empty queues and draws the first jobs.
Episodes are truncated after ``max_steps`` (100); they never terminate. ``info`` (of the last
step; 0 after ``reset``): ``mean_queue`` and ``max_queue`` (of ``q'``, work units),
``dropped`` and ``accepted`` (jobs), ``throughput`` (units served).

Reference policies, each ``policy_factory(env) -> policy(key, timestep) -> actions``:
``random_policy`` (``envs.core``), ``round_robin_policy`` (each dispatcher cycles through the
servers, one job each), ``join_shortest_queue_policy`` (full information: the server with
the least expected completion time ``(q_m + s_i) / μ_m`` among those the job fits in),
``join_shortest_observed_queue_policy`` (the same from the dispatcher's own stale view) and
``coordinated_dispatch_policy`` (JSQ decided in turn, each dispatcher counting the jobs of
those before it). Dispatchers running JSQ at the same time herd: they all pick the same
least-loaded server and overload it. The gap between JSQ and the coordinated policy is what
cooperation is worth here. Team returns with the defaults, as the evaluation reports them
(the sum of every dispatcher's return, so 3 times the shared reward's episode sum; measured
by ``python -m experiments.reference --env load-balancing-v1``, 4 seeds x 4096 episodes):
random -1077, round-robin -1027, observed-queue JSQ -816, JSQ -511, coordinated -331
(per dispatcher: -359, -342, -272, -170, -110).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxmarl_coop.envs.core import (
    Env,
    TimeStep,
    check_count,
    check_flag,
    check_param,
    check_param_types,
)
from jaxmarl_coop.envs.policy import Policy, feed_forward


@struct.dataclass
class LoadBalancingState:
    queue: jax.Array  # (M,) float32 backlog per server after service, work units
    queue_history: jax.Array  # (D, M) float32: queue_history[d] = queue d + 1 steps ago
    job_size: jax.Array  # (K,) float32 size of each dispatcher's pending job (0: none)
    last_server: jax.Array  # (K,) int32 server each dispatcher last sent a job to
    routed_size: jax.Array  # (K,) float32 size of the job routed in the last step (0: none)
    dropped: jax.Array  # (K,) bool: that job did not fit and was dropped
    served: jax.Array  # (M,) float32 work served in the last step
    step: jax.Array  # () int32


def _concrete_array(value: Any) -> Any:
    """A tuple/list of concrete numbers as a numpy array (so ``check_param`` sees it)."""
    if isinstance(value, (tuple, list)) and all(
            isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in value):
        return np.asarray(value, np.float64)
    return value


@struct.dataclass
class LoadBalancingParams:
    service_rate: jax.Array  # (M,) work units each server serves per step
    max_steps: int = 100
    arrival_prob: float = 0.8
    max_job_size: int = 5
    queue_capacity: float = 20.0
    info_delay: int = 2
    drop_penalty: float = 1.0

    def __post_init__(self) -> None:
        check_param_types(self)
        check_param("service_rate", _concrete_array(self.service_rate), low=0.0,
                    low_inclusive=False)
        check_param("max_steps", self.max_steps, low=1)
        check_param("arrival_prob", self.arrival_prob, low=0.0, high=1.0)
        check_param("max_job_size", self.max_job_size, low=1)
        check_param("queue_capacity", self.queue_capacity, low=0.0, low_inclusive=False)
        check_param("info_delay", self.info_delay, low=0)
        check_param("drop_penalty", self.drop_penalty, low=0.0)


class LoadBalancing(Env[LoadBalancingState, LoadBalancingParams]):
    """K dispatchers share M servers of unequal speed; the team pays for queues and drops."""

    noop_action = None  # every action dispatches: see the module docstring

    def __init__(self, num_dispatchers: int = 3, num_servers: int = 4, max_delay: int = 8,
                 debug: bool = False) -> None:
        self.num_dispatchers = check_count("num_dispatchers", num_dispatchers, 1)
        self.num_servers = check_count("num_servers", num_servers, 1)
        self.max_delay = check_count("max_delay", max_delay, 0)
        self.continuous_actions = False
        self.debug = check_flag("debug", debug)
        k, m = self.num_dispatchers, self.num_servers
        self.num_agents = k
        self.num_actions = m
        self.obs_dim = 3 * m + 3
        self.state_dim = 2 * m + k + 1
        self.agent_names = tuple(f"dispatcher_{i}" for i in range(k))
        self.teams = {"dispatchers": tuple(range(k))}

    def default_params(self) -> LoadBalancingParams:
        m = self.num_servers
        rates = np.full((1,), 2.0) if m == 1 else np.linspace(1.0, 3.0, m)
        return LoadBalancingParams(service_rate=jnp.asarray(rates, jnp.float32),
                                   info_delay=min(2, self.max_delay))

    def reset_env(self, key: jax.Array, params: LoadBalancingParams
                  ) -> tuple[LoadBalancingState, TimeStep]:
        k, m = self.num_dispatchers, self.num_servers
        self._check_params(params)
        state = LoadBalancingState(
            queue=jnp.zeros((m,), jnp.float32),
            queue_history=jnp.zeros((self.max_delay, m), jnp.float32),
            job_size=self._new_jobs(key, params),
            last_server=(jnp.arange(k, dtype=jnp.int32) - 1) % m,
            routed_size=jnp.zeros((k,), jnp.float32), dropped=jnp.zeros((k,), bool),
            served=jnp.zeros((m,), jnp.float32), step=jnp.zeros((), jnp.int32))
        reward, info = self._reward(state, params)
        return state, self._timestep(state, jnp.zeros_like(reward), info, params)

    def step_env(self, key: jax.Array, state: LoadBalancingState, actions: jax.Array,
                 params: LoadBalancingParams) -> tuple[LoadBalancingState, TimeStep]:
        rate = self._check_params(params)
        capacity = jnp.asarray(params.queue_capacity, jnp.float32)

        def admit(queue: jax.Array, job: tuple[jax.Array, jax.Array]
                  ) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
            server, size = job
            # INVALID_ACTION (-1): the server where the job would wait longest
            slowest = jnp.argmax((queue + size) / rate).astype(jnp.int32)
            server = jnp.where(server < 0, slowest, server)
            accepted = (size > 0) & (queue[server] + size <= capacity)
            return queue.at[server].add(jnp.where(accepted, size, 0.0)), (server, accepted)

        queue, (actions, accepted) = jax.lax.scan(admit, state.queue,
                                                  (actions, state.job_size))
        served = jnp.minimum(queue, rate)
        has_job = state.job_size > 0
        history = jnp.concatenate([state.queue[None], state.queue_history], axis=0)
        state = LoadBalancingState(
            queue=queue - served, queue_history=history[:self.max_delay],
            job_size=self._new_jobs(key, params),
            last_server=jnp.where(has_job, actions, state.last_server),
            routed_size=state.job_size, dropped=has_job & ~accepted, served=served,
            step=state.step + 1)
        reward, info = self._reward(state, params)
        return state, self._timestep(state, reward, info, params)

    def render(self, state: LoadBalancingState, params: LoadBalancingParams | None = None, *,
               size: int | None = None) -> np.ndarray:
        """Queues as bars (capacity dashed), pending jobs and the last step's routes."""
        from jaxmarl_coop.envs import render

        state, params, title = render.frame_setup(
            self, state, params, metrics=("mean_queue", "dropped", "throughput"))
        return draw_load_balancing(
            state.queue, float(params.queue_capacity), np.asarray(params.service_rate),
            state.job_size, state.last_server, state.routed_size, state.dropped,
            title=title, size=size)

    def check_params(self, params: LoadBalancingParams) -> None:
        """``ValueError`` if ``params`` do not fit this env: ``service_rate`` not of shape
        ``(M,)`` or a concrete ``info_delay`` above ``max_delay`` (``make`` calls it, so
        ``make("load-balancing-v1", info_delay=9)`` fails at once, not at ``reset``)."""
        self._check_params(params)

    # ----- pieces -----------------------------------------------------------------------
    def _check_params(self, params: LoadBalancingParams) -> jax.Array:
        """The service rates as an ``(M,)`` float32 array; shape checked at trace time."""
        rate = jnp.asarray(params.service_rate, jnp.float32)
        if rate.shape != (self.num_servers,):
            raise ValueError(f"service_rate must have shape ({self.num_servers},) (one rate "
                             f"per server), got shape {rate.shape}")
        check_param("info_delay", params.info_delay, low=0, high=self.max_delay)
        return rate

    def _new_jobs(self, key: jax.Array, params: LoadBalancingParams) -> jax.Array:
        k_arrive, k_size = jax.random.split(key)
        shape = (self.num_dispatchers,)
        arrives = jax.random.uniform(k_arrive, shape) < params.arrival_prob
        top = jnp.asarray(params.max_job_size).astype(jnp.int32) + 1
        sizes = jax.random.randint(k_size, shape, 1, top)
        return jnp.where(arrives, sizes, 0).astype(jnp.float32)

    def _reward(self, state: LoadBalancingState, params: LoadBalancingParams
                ) -> tuple[jax.Array, dict[str, jax.Array]]:
        rate = jnp.asarray(params.service_rate, jnp.float32)
        queue = jnp.asarray(state.queue, jnp.float32)
        dropped = jnp.sum(jnp.asarray(state.dropped)).astype(jnp.float32)
        accepted = jnp.sum((jnp.asarray(state.routed_size) > 0)
                           & ~jnp.asarray(state.dropped)).astype(jnp.float32)
        team = -jnp.sum(queue) / jnp.sum(rate) - params.drop_penalty * dropped
        info = {"mean_queue": jnp.mean(queue), "max_queue": jnp.max(queue),
                "dropped": dropped, "accepted": accepted,
                "throughput": jnp.sum(jnp.asarray(state.served, jnp.float32))}
        return jnp.full((self.num_dispatchers,), team, jnp.float32), info

    def observed_queue(self, state: LoadBalancingState, params: LoadBalancingParams
                       ) -> jax.Array:
        """``(M,)`` the queues as they were ``info_delay`` steps ago (what dispatchers see)."""
        history = jnp.concatenate([state.queue[None], state.queue_history], axis=0)
        delay = jnp.clip(jnp.asarray(params.info_delay, jnp.int32), 0, self.max_delay)
        return history[delay]

    def observations(self, state: LoadBalancingState, params: LoadBalancingParams
                     ) -> jax.Array:
        """``(K, obs_dim)``, laid out as in the module docstring."""
        k, m = self.num_dispatchers, self.num_servers
        capacity = jnp.asarray(params.queue_capacity, jnp.float32)
        rate = jnp.asarray(params.service_rate, jnp.float32)
        shared = jnp.concatenate([self.observed_queue(state, params) / capacity,
                                  rate / jnp.max(rate)])
        time = state.step.astype(jnp.float32) / params.max_steps
        return jnp.concatenate([
            jnp.broadcast_to(shared, (k, 2 * m)),
            (state.job_size / capacity)[:, None], (state.job_size > 0)[:, None].astype(jnp.float32),
            jax.nn.one_hot(state.last_server, m),
            jnp.broadcast_to(time, (k, 1))], axis=-1).astype(jnp.float32)

    def _timestep(self, state: LoadBalancingState, reward: jax.Array,
                  info: dict[str, jax.Array], params: LoadBalancingParams) -> TimeStep:
        capacity = jnp.asarray(params.queue_capacity, jnp.float32)
        rate = jnp.asarray(params.service_rate, jnp.float32)
        time = state.step.astype(jnp.float32) / params.max_steps
        global_state = jnp.concatenate([state.queue / capacity, rate / jnp.max(rate),
                                        state.job_size / capacity, time[None]])
        return TimeStep(obs=self.observations(state, params),
                        action_mask=self.all_legal_mask(),
                        global_state=global_state.astype(jnp.float32), reward=reward,
                        terminated=jnp.zeros((), bool),
                        truncated=state.step >= params.max_steps, info=info)


# ----- reference policies ---------------------------------------------------------------
def _best_server(queue: jax.Array, speed: jax.Array, size: jax.Array) -> jax.Array:
    """The server with the least ``(queue + size) / speed`` among those where the job fits
    (queue and size in units of the capacity, so it fits where their sum is <= 1); if it
    fits nowhere, among all. Ties go to the lowest index."""
    finish = (queue + size) / speed
    fits = queue + size <= 1.0 + 1e-6
    return jnp.argmin(jnp.where(jnp.any(fits), jnp.where(fits, finish, jnp.inf), finish)
                      ).astype(jnp.int32)


def round_robin_policy(env: LoadBalancing) -> Policy:
    """Each dispatcher sends its jobs to the servers in turn (dispatcher i starts at i).

    Reads the "last server" one-hot of each observation; ignores loads and speeds.
    """
    m = env.num_servers

    def policy(key: jax.Array, timestep: TimeStep) -> jax.Array:
        del key
        last = jnp.argmax(timestep.obs[:, 2 * m + 2:3 * m + 2], axis=-1)
        return ((last + 1) % m).astype(jnp.int32)

    return feed_forward(policy)


def join_shortest_queue_policy(env: LoadBalancing) -> Policy:
    """Full information, no coordination: every dispatcher picks the server with the least
    expected completion time ``(q_m + s_i) / μ_m`` from the true queues (global state),
    among those its job fits in. Dispatchers deciding together herd onto one server."""
    m, k = env.num_servers, env.num_dispatchers

    def policy(key: jax.Array, timestep: TimeStep) -> jax.Array:
        del key
        gs = timestep.global_state
        queue, speed, sizes = gs[:m], gs[m:2 * m], gs[2 * m:2 * m + k]
        return jax.vmap(lambda s: _best_server(queue, speed, s))(sizes)

    return feed_forward(policy)


def join_shortest_observed_queue_policy(env: LoadBalancing) -> Policy:
    """As ``join_shortest_queue_policy``, but each dispatcher uses only its own observation:
    queues ``info_delay`` steps old. Decentralised; a baseline for learners."""
    m = env.num_servers

    def policy(key: jax.Array, timestep: TimeStep) -> jax.Array:
        del key
        obs = timestep.obs
        return jax.vmap(_best_server)(obs[:, :m], obs[:, m:2 * m], obs[:, 2 * m])

    return feed_forward(policy)


def coordinated_dispatch_policy(env: LoadBalancing) -> Policy:
    """Centralised greedy: dispatchers decide in index order, each choosing as JSQ does on
    the true queues plus the jobs that dispatchers before it just sent (if they fit)."""
    m, k = env.num_servers, env.num_dispatchers

    def policy(key: jax.Array, timestep: TimeStep) -> jax.Array:
        del key
        gs = timestep.global_state

        def choose(queue: jax.Array, size: jax.Array) -> tuple[jax.Array, jax.Array]:
            server = _best_server(queue, gs[m:2 * m], size)
            fits = (size > 0) & (queue[server] + size <= 1.0 + 1e-6)
            return queue.at[server].add(jnp.where(fits, size, 0.0)), server

        _, actions = jax.lax.scan(choose, gs[:m], gs[2 * m:2 * m + k])
        return actions

    return feed_forward(policy)


# ----- drawing --------------------------------------------------------------------------
def draw_load_balancing(queue: Any, capacity: float, service_rate: Any, job_size: Any,
                        last_server: Any, routed_size: Any, dropped: Any, *,
                        title: str = "", size: int | None = None) -> np.ndarray:
    """Servers as bars of their backlog (up to the dashed capacity line, speed below),
    dispatchers above them with their pending job, and arrows for the jobs routed in the
    last step (red and crossed where the job was dropped)."""
    from jaxmarl_coop.envs import render

    queue = np.asarray(queue, np.float64).reshape(-1)
    rate = np.asarray(service_rate, np.float64).reshape(-1)
    job_size = np.asarray(job_size, np.float64).reshape(-1)
    last_server = np.asarray(last_server).reshape(-1).astype(int)
    routed_size = np.asarray(routed_size, np.float64).reshape(-1)
    dropped = np.asarray(dropped).reshape(-1).astype(bool)
    m, k = queue.size, job_size.size
    capacity = float(capacity)

    fig = render._figure(size)
    ax = fig.add_axes((0.02, 0.02, 0.96, 0.84))
    ax.set_xlim(-0.6, m - 0.4)
    ax.set_ylim(-0.25, 1.75)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    level = np.clip(queue / capacity, 0.0, 1.0)
    colors = [(0.85, 0.25, 0.2) if q >= 0.75 else render.AGENT_COLOR for q in level]
    for j in range(m):
        ax.add_patch(render.Rectangle((j - 0.35, 0.0), 0.7, 1.0, fill=False,
                                      edgecolor="0.6", linewidth=0.8))
    ax.bar(np.arange(m), level, width=0.7, color=colors, alpha=0.85)
    ax.axhline(1.0, color="0.3", linestyle="--", linewidth=0.8)
    for j in range(m):
        ax.text(j, -0.12, f"S{j} μ={rate[j]:.3g}\nq={queue[j]:.3g}", ha="center", va="center",
                fontsize=6)
    xs = np.linspace(-0.3, m - 0.7, k) if k > 1 else np.array([(m - 1) / 2])
    for i, x in enumerate(xs):
        if routed_size[i] > 0:
            target = last_server[i]
            color = render.TARGET_COLOR if dropped[i] else "0.35"
            ax.annotate("", xy=(target, 1.03), xytext=(x, 1.42), zorder=2,
                        arrowprops={"arrowstyle": "->", "color": color, "linewidth": 1.0})
            if dropped[i]:
                ax.plot((x + target) / 2, 1.22, marker="x", color=color, markersize=8)
        ax.plot(x, 1.52, marker="o", markersize=12, markerfacecolor=render.PREY_COLOR,
                markeredgecolor="black", markeredgewidth=0.8, zorder=3)
        ax.text(x, 1.52, str(i), ha="center", va="center", fontsize=6, zorder=4)
        if job_size[i] > 0:
            ax.text(x, 1.68, f"job {job_size[i]:g}", ha="center", va="center", fontsize=6)
    render._title(fig, title)
    return render.figure_to_array(fig)
