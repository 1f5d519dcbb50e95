"""Parity of ``spread-v3`` / ``tag-v3`` with the reference MPE (``mpe2``), run live.

The reference (``mpe2.simple_spread_v3`` / ``mpe2.simple_tag_v3`` parallel envs) is
installed and stepped here with seeded numpy random actions; nothing is frozen. For every
configuration we record, per episode, mpe2's world state before and after each of the 25
steps (read from ``env.unwrapped.world``), its observations, ``state()``, rewards and
termination/truncation flags. Our env is then stepped on the same actions (one ``jit`` of
``vmap(env.step)`` per configuration, shared by every episode and both comparisons) in two
ways:

* **one-step parity** (``resync=True``): before every step our state is overwritten with
  mpe2's recorded pre-step state (rounded to float32), so each step is compared on its own.
  Tolerance ``atol=1e-5, rtol=1e-6``: our single float32 step differs from mpe2's float64 one
  only by rounding. The worst amplification is the contact force, whose derivative in the
  distance is at most ``contact_force = 100``, i.e. ``dt * 100 = 10`` on the velocity per unit
  of position error; with ~1e-7 relative input rounding this stays ~1e-6 (each test prints
  its max errors; the largest seen is 3.3e-6, on a velocity in a forced-contact episode; the
  rtol covers prey rewards of magnitude ~50, whose float32 ulp is ~4e-6).
* **whole-episode parity** (``resync=False``): our env runs the 25 steps alone from mpe2's
  initial state. Rounding differences then propagate and are amplified by contacts (each
  step in deep contact can roughly double a position error, see the derivative bound above),
  so the comparison is looser: ``atol=rtol=1e-3`` on positions, velocities, observations,
  global state and rewards. That is still ~1000x below any real semantic error (a wrong
  constant, sign or integration order moves things by >= 1e-2 within a few steps). The
  largest drift seen is 3.2e-4 (a velocity, spread N=5 continuous, forced contacts); from
  ``reset`` it is <= 2.2e-4 (spread N=5), most configurations stay below 2e-5.

Collision/catch counts in the rewards are discrete: a count can legitimately differ where a
distance lies within rounding of its threshold (``dist < size_i + size_j``, strict). Rather
than skip such rewards, we recount the indicator from each side's own positions; every
indicator that differs must have mpe2's distance within ``window`` of the threshold
(1e-5 one-step, 1e-3 whole-episode), and our reward, corrected by exactly the reward quantum
times the difference in counts, must still match. Continuous rewards (landmark distances,
the prey's boundary penalty) are continuous functions of position and are compared directly.

Episodes start either from ``reset(seed=...)`` (20 seeds per configuration) or from forced
overlapping states with large velocities (written into mpe2's world entities as fresh
float64 arrays, and into ours), so contact forces, the speed clamp, catches, obstacle
contacts and the prey's boundary penalty are exercised; ``test_forced_episodes_exercise_*``
asserts that they actually occur, so the parity tests cannot pass vacuously.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmarl_coop.envs import make
from jaxmarl_coop.envs.spread import SpreadState
from jaxmarl_coop.envs.tag import TagState

simple_spread_v3 = pytest.importorskip("mpe2.simple_spread_v3")
simple_tag_v3 = pytest.importorskip("mpe2.simple_tag_v3")

MAX_CYCLES = 25
RESET_EPISODES = 20  # episodes from reset(seed) per configuration
FORCED_EPISODES = 12  # episodes from forced overlapping states per configuration

# reference constants (mpe.md sections 1 and 6)
SPREAD_AGENT_SIZE = 0.15
SPREAD_LOCAL_RATIO = 0.5
TAG_ADV_SIZE, TAG_GOOD_SIZE, TAG_OBSTACLE_SIZE = 0.075, 0.05, 0.2
TAG_ADV_MAX_SPEED, TAG_GOOD_MAX_SPEED = 1.0, 1.3
TAG_CATCH_REWARD = 10.0


@dataclasses.dataclass(frozen=True)
class Tolerance:
    atol: float
    rtol: float
    window: float  # how close to its threshold a distance may be where a count flips


ONE_STEP = Tolerance(atol=1e-5, rtol=1e-6, window=1e-5)
WHOLE_EPISODE = Tolerance(atol=1e-3, rtol=1e-3, window=1e-3)


def _build_cases() -> dict[str, tuple[str, dict, dict]]:
    """Case name -> (our env id, our kwargs, mpe2 kwargs)."""
    cases = {}
    for cont in (False, True):
        mode = "cont" if cont else "disc"
        for n in (2, 3, 5):
            cases[f"spread-N{n}-{mode}"] = (
                "spread-v3", {"num_agents": n, "continuous_actions": cont},
                {"N": n, "continuous_actions": cont})
        for a, g, k in ((3, 1, 2), (2, 2, 1)):
            cases[f"tag-a{a}g{g}o{k}-{mode}"] = (
                "tag-v3", {"num_adversaries": a, "num_good": g, "num_obstacles": k,
                           "continuous_actions": cont},
                {"num_adversaries": a, "num_good": g, "num_obstacles": k,
                 "continuous_actions": cont})
    return cases


CASES = _build_cases()
STARTS = ("reset", "forced")


def _is_tag(case: str) -> bool:
    return CASES[case][0] == "tag-v3"


# ----- the reference ------------------------------------------------------------------------
@dataclasses.dataclass
class Reference:
    """mpe2's recorded episodes, ``B`` of them, batched on the leading axis."""

    names: list[str]
    pos: np.ndarray  # (B, T+1, n, 2) float64; [:, 0] is the start, [:, t] after step t
    vel: np.ndarray  # (B, T+1, n, 2) float64
    landmarks: np.ndarray  # (B, L, 2) float64 (they never move)
    actions: np.ndarray  # (B, T, n) int32 or (B, T, n, 5) float32
    obs: list[np.ndarray]  # per agent (B, T, w_i) float32, after each step
    state: np.ndarray  # (B, T, D) float32, env.state() after each step
    reward: np.ndarray  # (B, T, n) float64
    terminated: np.ndarray  # (B, T, n) bool
    truncated: np.ndarray  # (B, T, n) bool


def _make_reference_env(case: str):
    env_id, _, ref_kwargs = CASES[case]
    module = simple_tag_v3 if env_id == "tag-v3" else simple_spread_v3
    return module.parallel_env(max_cycles=MAX_CYCLES, **ref_kwargs)


def _force_overlap(world, rng: np.random.Generator, tag: bool) -> None:
    """Pile every agent into one small square with large velocities (fresh float64 arrays).

    Tag: agents within +-0.08 of a centre (every pair overlaps or nearly: sizes sum to
    0.1-0.15), speeds up to ~2.8 (above both max speeds), and obstacle 0 dropped on the pile.
    Spread: agents within +-0.12 (sizes sum to 0.3), speeds up to ~4.2.
    """
    center = rng.uniform(-0.5, 0.5, 2)
    half, speed = (0.08, 2.0) if tag else (0.12, 3.0)
    for agent in world.agents:
        offset = rng.uniform(-half, half, 2)
        # mostly towards the centre (so discs keep pushing into each other), plus noise
        inward = -offset / np.linalg.norm(offset) * rng.uniform(0.5, speed)
        agent.state.p_pos = np.array(center + offset, dtype=np.float64)
        agent.state.p_vel = np.array(inward + rng.uniform(-0.5, 0.5, 2), dtype=np.float64)
    if tag and world.landmarks:
        world.landmarks[0].state.p_pos = np.array(center + rng.uniform(-0.2, 0.2, 2),
                                                  dtype=np.float64)


@functools.cache
def reference(case: str, start: str) -> Reference:
    """Run mpe2 for every episode of ``case`` starting from ``start``."""
    env = _make_reference_env(case)
    continuous = CASES[case][1]["continuous_actions"]
    episodes = RESET_EPISODES if start == "reset" else FORCED_EPISODES
    per_episode = []
    for episode in range(episodes):
        seed = episode if start == "reset" else 1000 + episode
        env.reset(seed=seed)
        world = env.unwrapped.world
        rng = np.random.default_rng(seed)
        if start == "forced":
            _force_overlap(world, rng, _is_tag(case))
        names = list(env.possible_agents)
        n = len(names)
        pos, vel = [], []
        acts, obs, states, rewards, terms, truncs = [], [], [], [], [], []
        for _ in range(MAX_CYCLES):
            pos.append(np.array([a.state.p_pos for a in world.agents]))
            vel.append(np.array([a.state.p_vel for a in world.agents]))
            if continuous:
                act = rng.random((n, 5), dtype=np.float32)
                step_actions = {name: act[i].copy() for i, name in enumerate(names)}
            else:
                act = rng.integers(0, 5, n).astype(np.int32)
                step_actions = {name: int(act[i]) for i, name in enumerate(names)}
            o, r, te, tr, _ = env.step(step_actions)
            acts.append(act)
            obs.append([np.asarray(o[name]) for name in names])
            states.append(np.asarray(env.state()))
            rewards.append([r[name] for name in names])
            terms.append([te[name] for name in names])
            truncs.append([tr[name] for name in names])
        pos.append(np.array([a.state.p_pos for a in world.agents]))
        vel.append(np.array([a.state.p_vel for a in world.agents]))
        landmarks = np.array([lm.state.p_pos for lm in world.landmarks]).reshape(-1, 2)
        per_episode.append((pos, vel, landmarks, acts, obs, states, rewards, terms, truncs))
        assert env.agents == []  # the 25th step ended the episode

    def stack(i, dtype=None):
        return np.array([ep[i] for ep in per_episode], dtype=dtype)

    obs = [np.array([[step_obs[j] for step_obs in ep[4]] for ep in per_episode])
           for j in range(len(names))]
    return Reference(names=names, pos=stack(0, np.float64), vel=stack(1, np.float64),
                     landmarks=stack(2, np.float64), actions=stack(3), obs=obs,
                     state=stack(5), reward=stack(6, np.float64), terminated=stack(7, bool),
                     truncated=stack(8, bool))


# ----- ours -----------------------------------------------------------------------------------
@functools.cache
def ours(case: str):
    """Our env, its params and ``jit(vmap(step))`` over a batch of states and actions."""
    env_id, kwargs, _ = CASES[case]
    env, params = make(env_id, **kwargs)
    step = jax.jit(jax.vmap(env.step, in_axes=(None, 0, 0, None)))
    return env, params, step


def _our_state(case: str, pos, vel, landmarks, step: int):
    f32 = functools.partial(jnp.asarray, dtype=jnp.float32)
    steps = jnp.full((pos.shape[0],), step, jnp.int32)
    if _is_tag(case):
        return TagState(agent_pos=f32(pos), agent_vel=f32(vel), obstacle_pos=f32(landmarks),
                        step=steps)
    return SpreadState(agent_pos=f32(pos), agent_vel=f32(vel), landmark_pos=f32(landmarks),
                       step=steps)


def run_ours(case: str, ref: Reference, resync: bool) -> dict[str, np.ndarray]:
    """Step our env on mpe2's actions; every output with axes (B, T, ...)."""
    _, params, step = ours(case)
    key = jax.random.key(0)
    state = _our_state(case, ref.pos[:, 0], ref.vel[:, 0], ref.landmarks, 0)
    out = []
    for t in range(MAX_CYCLES):
        if resync:
            state = _our_state(case, ref.pos[:, t], ref.vel[:, t], ref.landmarks, t)
        state, ts = step(key, state, jnp.asarray(ref.actions[:, t]), params)
        out.append(jax.device_get({
            "pos": state.agent_pos, "vel": state.agent_vel, "obs": ts.obs,
            "state": ts.global_state, "reward": ts.reward, "terminated": ts.terminated,
            "truncated": ts.truncated}))
    return {k: np.stack([o[k] for o in out], axis=1) for k in out[0]}


# ----- comparison -----------------------------------------------------------------------------
def _dist(pos_a: np.ndarray, pos_b: np.ndarray) -> np.ndarray:
    """``(..., I, J)`` distances between ``(..., I, 2)`` and ``(..., J, 2)`` positions."""
    delta = pos_a[..., :, None, :] - pos_b[..., None, :, :]
    return np.sqrt(np.sum(delta * delta, axis=-1))


def _flipped(ref_d: np.ndarray, our_d: np.ndarray, threshold: float, window: float):
    """Both sides' contact indicators; any disagreement must sit at the threshold."""
    ref_hit, our_hit = ref_d < threshold, our_d < threshold
    flips = ref_hit != our_hit
    near = np.abs(ref_d - threshold) < window
    assert np.all(near[flips]), (
        f"a collision indicator differs {int(np.sum(flips & ~near))} time(s) with the "
        f"reference distance farther than {window} from the threshold {threshold}")
    return ref_hit, our_hit, int(np.sum(flips))


def _reward_correction(case: str, ref: Reference, our_pos: np.ndarray, tol: Tolerance):
    """What to add to our reward to use mpe2's contact counts instead of ours; flip count."""
    ref_pos = ref.pos[:, 1:]
    if not _is_tag(case):
        n = ref_pos.shape[-2]
        off = ~np.eye(n, dtype=bool)
        ref_hit, our_hit, flips = _flipped(_dist(ref_pos, ref_pos), _dist(our_pos, our_pos),
                                           2 * SPREAD_AGENT_SIZE, tol.window)
        ref_hits, our_hits = np.sum(ref_hit & off, -1), np.sum(our_hit & off, -1)
        # r_i = ... - local_ratio * hits_i
        return SPREAD_LOCAL_RATIO * (our_hits - ref_hits), flips
    a = CASES[case][1]["num_adversaries"]
    ref_hit, our_hit, flips = _flipped(
        _dist(ref_pos[..., a:, :], ref_pos[..., :a, :]),
        _dist(our_pos[..., a:, :], our_pos[..., :a, :]), TAG_GOOD_SIZE + TAG_ADV_SIZE,
        tol.window)  # (B, T, G, A)
    ref_prey, our_prey = np.sum(ref_hit, -1), np.sum(our_hit, -1)  # (B, T, G)
    ref_all, our_all = np.sum(ref_prey, -1), np.sum(our_prey, -1)  # (B, T)
    adversary = -TAG_CATCH_REWARD * (our_all - ref_all)[..., None].repeat(a, -1)
    prey = TAG_CATCH_REWARD * (our_prey - ref_prey)
    return np.concatenate([adversary, prey], axis=-1), flips


def compare(case: str, ref: Reference, got: dict[str, np.ndarray], tol: Tolerance
            ) -> dict[str, float]:
    """Assert parity of every output; return the max abs error per quantity."""
    env, _, _ = ours(case)
    assert ref.names == list(env.agent_names)
    close = functools.partial(np.testing.assert_allclose, rtol=tol.rtol, atol=tol.atol)
    errors = {}

    def check(name, actual, desired):
        errors[name] = max(errors.get(name, 0.0), float(np.max(np.abs(actual - desired))))
        close(actual, desired, err_msg=f"{case}: {name}")

    check("pos", got["pos"], ref.pos[:, 1:])
    check("vel", got["vel"], ref.vel[:, 1:])
    for i, ref_obs in enumerate(ref.obs):
        width = ref_obs.shape[-1]
        assert width == env.agent_obs_dim(i), (case, i, width)
        check("obs", got["obs"][:, :, i, :width], ref_obs)
        np.testing.assert_array_equal(got["obs"][:, :, i, width:], 0.0,
                                      err_msg=f"{case}: obs padding of agent {i}")
    check("state", got["state"], ref.state)
    correction, flips = _reward_correction(case, ref, got["pos"], tol)
    check("reward", got["reward"] + correction, ref.reward)
    errors["count_flips"] = flips
    # termination: never; truncation: all agents exactly at the 25th step
    assert not ref.terminated.any() and not got["terminated"].any()
    expected_trunc = np.arange(1, MAX_CYCLES + 1) >= MAX_CYCLES
    np.testing.assert_array_equal(ref.truncated, expected_trunc[None, :, None]
                                  .repeat(ref.truncated.shape[0], 0)
                                  .repeat(ref.truncated.shape[2], 2))
    np.testing.assert_array_equal(got["truncated"], ref.truncated[..., 0])
    return errors


PARAMS = [pytest.param(case, start, id=f"{case}-{start}") for case in CASES for start in STARTS]


@pytest.mark.parametrize(("case", "start"), PARAMS)
def test_one_step_parity(case: str, start: str):
    ref = reference(case, start)
    errors = compare(case, ref, run_ours(case, ref, resync=True), ONE_STEP)
    print(f"one-step {case}-{start} max abs errors: {errors}")


@pytest.mark.parametrize(("case", "start"), PARAMS)
def test_whole_episode_parity(case: str, start: str):
    ref = reference(case, start)
    errors = compare(case, ref, run_ours(case, ref, resync=False), WHOLE_EPISODE)
    print(f"whole-episode {case}-{start} max abs errors: {errors}")


@pytest.mark.parametrize("case", [c for c in CASES if not _is_tag(c)])
def test_forced_episodes_exercise_spread_collisions(case: str):
    ref = reference(case, "forced")
    d = _dist(ref.pos, ref.pos)  # (B, T+1, n, n)
    n = d.shape[-1]
    pairs = d[..., np.triu_indices(n, 1)[0], np.triu_indices(n, 1)[1]]
    # every forced start overlaps, and collisions are rewarded after steps, too
    assert np.all(np.any(pairs[:, 0] < 2 * SPREAD_AGENT_SIZE, axis=-1))
    assert np.sum(pairs[:, 1:] < 2 * SPREAD_AGENT_SIZE) >= FORCED_EPISODES
    # deep contacts: the contact force (>= 10) dominates the action force (<= 5*sqrt(2))
    assert np.min(pairs[:, 0]) < 2 * SPREAD_AGENT_SIZE - 0.1


@pytest.mark.parametrize("case", [c for c in CASES if _is_tag(c)])
def test_forced_episodes_exercise_tag_catches(case: str):
    ref = reference(case, "forced")
    a = CASES[case][1]["num_adversaries"]
    catch = _dist(ref.pos[:, 1:, a:], ref.pos[:, 1:, :a]) < TAG_GOOD_SIZE + TAG_ADV_SIZE
    assert np.sum(catch) >= FORCED_EPISODES // 2, "too few catches"
    assert np.any(ref.reward[..., :a] > 0) and np.any(ref.reward[..., a:] <= -TAG_CATCH_REWARD)
    # obstacle contacts (from pre-step positions, which drive the forces)
    to_obstacle = _dist(ref.pos[:, :-1], ref.landmarks[:, None])
    sizes = np.where(np.arange(ref.pos.shape[2]) < a, TAG_ADV_SIZE, TAG_GOOD_SIZE)
    assert np.sum(to_obstacle < (sizes[:, None] + TAG_OBSTACLE_SIZE)) >= FORCED_EPISODES
    # the speed clamp bit, for both teams
    speed = np.linalg.norm(ref.vel[:, 1:], axis=-1)
    assert np.sum(np.isclose(speed[..., :a], TAG_ADV_MAX_SPEED, rtol=0, atol=1e-12)) > 0
    assert np.sum(np.isclose(speed[..., a:], TAG_GOOD_MAX_SPEED, rtol=0, atol=1e-12)) > 0
    # the prey's boundary penalty, including its exponential branch (|x| >= 1)
    assert np.any(np.abs(ref.pos[:, 1:, a:]) >= 1.0)


def test_reset_episodes_see_some_contacts():
    """Even from reset, random play touches the contact/catch code paths sometimes."""
    spread = reference("spread-N5-disc", "reset")
    d = _dist(spread.pos[:, 1:], spread.pos[:, 1:])
    assert np.sum((d < 2 * SPREAD_AGENT_SIZE) & ~np.eye(5, dtype=bool)) > 0
    tag = reference("tag-a3g1o2-disc", "reset")
    assert np.any(np.abs(tag.pos[:, 1:, 3:]) >= 0.9)  # boundary penalty active
