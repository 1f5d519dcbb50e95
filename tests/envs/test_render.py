"""Frames of every registered env, episode rollouts as frames, and GIF writing."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from PIL import Image

from jaxmarl_coop.envs import (
    AutoReset,
    Env,
    VecEnv,
    feed_forward,
    make,
    random_policy,
    registered,
    wrap,
)
from jaxmarl_coop.envs.render import animate, rollout_frames, save_gif

SIZE = 96  # small frames keep the file fast


def _states(env_id: str, steps: int = 2):
    """The reset state and ``steps`` states after it (one jitted scan: cheaper than eager)."""
    env, params = make(env_id, max_steps=5)
    policy = random_policy(env)

    def run(key, params):
        state, ts = env.reset(key, params)

        def body(carry, key):
            k_act, k_step = jax.random.split(key)
            state, ts = env.step(k_step, carry[0], policy(k_act, carry[1], ())[0], params)
            return (state, ts), state

        _, traj = jax.lax.scan(body, (state, ts), jax.random.split(key, steps))
        return state, traj

    first, traj = jax.jit(run)(jax.random.PRNGKey(0), params)
    return env, params, [first] + [jax.tree.map(lambda x, t=t: x[t], traj) for t in range(steps)]


@pytest.mark.parametrize("env_id", registered())
def test_render_every_registered_env(env_id):
    env, params, states = _states(env_id)
    frames = [env.render(s, params, size=SIZE) for s in states]
    for frame in frames:
        assert isinstance(frame, np.ndarray)
        assert frame.dtype == np.uint8 and frame.shape == (SIZE, SIZE, 3)
        assert len(np.unique(frame.reshape(-1, 3), axis=0)) > 2  # not one flat colour
    assert not np.array_equal(frames[0], frames[-1])
    assert env.render(states[0], size=SIZE).shape == (SIZE, SIZE, 3)  # params default


def test_render_default_size_and_bad_size():
    env, params, states = _states("spread-v3", steps=0)
    assert env.render(states[0], params).shape == (400, 400, 3)
    with pytest.raises(ValueError, match="frame size"):
        env.render(states[0], params, size=8)


def test_render_of_a_batch_asks_for_one_env():
    base, params = make("tracking-v1")
    env = VecEnv(base, num_envs=2)
    state, _ = jax.jit(env.reset)(jax.random.PRNGKey(0), params)
    with pytest.raises(ValueError, match="index one env"):
        base.render(state, params, size=SIZE)
    with pytest.raises(ValueError, match="index one env"):
        env.render(state, params, size=SIZE)
    one = jax.tree.map(lambda x: x[1], state)
    assert base.render(one, params, size=SIZE).shape == (SIZE, SIZE, 3)


def test_render_inside_jit_is_a_clear_error():
    env, params, states = _states("climbing-v1", steps=0)
    with pytest.raises(TypeError, match="outside jit"):
        jax.jit(lambda s: env.render(s, params, size=SIZE))(states[0])


def test_wrapped_env_renders_the_inner_state():
    base, params = make("grid-tracking-v1")
    env = wrap(base, agent_id=True)
    state, _ = jax.jit(env.reset)(jax.random.PRNGKey(3), params)
    inner = state.env_state  # EpisodeStats carries its own state; the rest pass it through
    np.testing.assert_array_equal(env.render(state, params, size=SIZE),
                                  base.render(inner, params, size=SIZE))


def test_base_env_render_names_the_class():
    class Bare(Env):
        pass

    with pytest.raises(NotImplementedError, match="Bare"):
        Bare().render(None, None)


@pytest.fixture(scope="module")
def spread_episode():
    env, params = make("spread-v3")  # a 25-step episode
    frames = rollout_frames(env, params, random_policy(env), jax.random.PRNGKey(7), size=64)
    return env, params, frames


def test_rollout_frames_one_per_state(spread_episode):
    env, params, frames = spread_episode
    assert int(params.max_steps) == 25
    assert len(frames) == 25 + 1
    assert all(f.shape == (64, 64, 3) and f.dtype == np.uint8 for f in frames)
    policy = random_policy(env)
    short = rollout_frames(env, params, policy, jax.random.PRNGKey(7), max_steps=3, size=64)
    assert len(short) == 4
    for a, b in zip(short, frames[:4], strict=True):  # same key, same episode
        np.testing.assert_array_equal(a, b)


def test_rollout_frames_refuses_auto_reset():
    env, params = make("spread-v3", max_steps=2)
    with pytest.raises(ValueError, match="auto-reset"):
        rollout_frames(AutoReset(env), params, random_policy(env), jax.random.PRNGKey(0))


def test_rollout_frames_and_animate_need_a_policy(tmp_path):
    env, params = make("spread-v3", max_steps=2)

    def plain(key, ts):
        return ts.action_mask.argmax(-1)

    with pytest.raises(TypeError, match=r"rollout_frames needs .*feed_forward"):
        rollout_frames(env, params, plain, jax.random.PRNGKey(0))
    with pytest.raises(TypeError, match="feed_forward"):
        animate(env, params, plain, jax.random.PRNGKey(0), str(tmp_path / "a.gif"))
    assert not (tmp_path / "a.gif").exists()
    assert len(rollout_frames(env, params, feed_forward(plain), jax.random.PRNGKey(0),
                              size=64)) == 3


def test_save_gif_writes_a_valid_animation(spread_episode, tmp_path):
    _, _, frames = spread_episode
    path = save_gif(frames, tmp_path / "runs" / "a" / "episode.gif", fps=20)
    assert path == tmp_path / "runs" / "a" / "episode.gif"
    with Image.open(path) as gif:
        assert gif.format == "GIF"
        assert gif.n_frames == len(frames)
        assert gif.size == (64, 64)
        assert gif.info["duration"] == 50
    assert sorted(p.name for p in path.parent.iterdir()) == ["episode.gif"]  # no temp file
    save_gif(frames[:2], path)  # replaces an existing file
    with Image.open(path) as gif:
        assert gif.n_frames == 2
    assert sorted(p.name for p in path.parent.iterdir()) == ["episode.gif"]


def test_save_gif_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="at least one frame"):
        save_gif([], tmp_path / "empty.gif")
    frame = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="frame 1"):
        save_gif([frame, np.zeros((8, 9, 3), np.uint8)], tmp_path / "bad.gif")
    with pytest.raises(ValueError, match="fps"):
        save_gif([frame], tmp_path / "bad.gif", fps=0)
    assert list(tmp_path.iterdir()) == []


def test_animate_matrix_game(tmp_path):
    env, params = make("prisoners-dilemma-v1", max_steps=4)
    path = animate(env, params, random_policy(env), jax.random.PRNGKey(1),
                   str(tmp_path / "pd.gif"), size=64)
    with Image.open(path) as gif:
        assert 2 <= gif.n_frames <= 5  # Pillow merges identical consecutive frames
