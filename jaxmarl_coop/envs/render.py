"""Frames of env states (matplotlib, Agg, object API) and GIF animations of episodes.

Every drawing helper returns one RGB frame, a ``uint8`` array of shape ``(size, size, 3)``.
Figures are built with ``matplotlib.figure.Figure`` on a ``FigureCanvasAgg``: no pyplot,
no global backend switch, safe in scripts and threads. Envs call these helpers from their
``render(state, params)`` method (outside ``jit``); ``rollout_frames`` and ``animate`` play
one episode of a policy and draw every state of it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Circle, Rectangle

from jaxmarl_coop.envs.core import Env, TimeStep, episode_limit
from jaxmarl_coop.envs.policy import Policy, check_policy

#: Default frame width and height in pixels.
DEFAULT_SIZE = 400
#: The figure is always this many inches wide, so text keeps its proportions at any size.
_INCHES = 4.0

# the reference MPE's colours
AGENT_COLOR = (0.35, 0.35, 0.85)
PREDATOR_COLOR = (0.85, 0.35, 0.35)
PREY_COLOR = (0.35, 0.85, 0.35)
LANDMARK_COLOR = (0.25, 0.25, 0.25)
OBSTACLE_COLOR = (0.25, 0.25, 0.25)
TARGET_COLOR = (0.9, 0.1, 0.1)
#: Drawn radius of point landmarks (the reference draws landmarks of size 0.05).
LANDMARK_RADIUS = 0.05

Color = Any  # anything matplotlib accepts as a colour


# ----- frames ---------------------------------------------------------------------------
def _check_size(size: int | None) -> int:
    size = DEFAULT_SIZE if size is None else size
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 64:
        raise ValueError(f"frame size must be an int >= 64 (pixels), got {size!r}")
    return int(size)


def _figure(size: int | None) -> Figure:
    size = _check_size(size)
    fig = Figure(figsize=(_INCHES, _INCHES), dpi=size / _INCHES)
    FigureCanvasAgg(fig)
    return fig


def figure_to_array(fig: Figure) -> np.ndarray:
    """Draw ``fig`` on its Agg canvas and return the RGB pixels, ``uint8 (H, W, 3)``."""
    canvas = fig.canvas
    if not isinstance(canvas, FigureCanvasAgg):
        canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.array(canvas.buffer_rgba())[..., :3]


def host_state(env_name: str, state: Any) -> Any:
    """One env's state as numpy arrays; a clear error for a batch or a traced state.

    Every state here has a scalar ``step`` field, so a leading env axis shows there.
    """
    leaves = jax.tree.leaves(state)
    if any(isinstance(leaf, jax.core.Tracer) for leaf in leaves):
        raise TypeError(f"{env_name}.render draws concrete states outside jit/vmap; "
                        "got a traced state")
    state = jax.device_get(state)
    step = getattr(state, "step", None)
    if step is not None and np.ndim(step) != 0:
        raise ValueError(f"{env_name}.render draws one env's state, got a batch (its step has "
                         f"shape {np.shape(step)}): index one env first, e.g. "
                         "jax.tree.map(lambda x: x[0], state)")
    return state


def frame_setup(env: Any, state: Any, params: Any, metrics: Sequence[str] | None = None
                ) -> tuple[Any, Any, str]:
    """``(host state, params, title)`` for one frame of ``env``: its state as numpy (see
    :func:`host_state`), its default params if ``params`` is None, and a title with the env's
    name, the step and its info metrics (recomputed with the env's ``_reward``; only
    ``metrics`` if given)."""
    name = env.name or type(env).__name__
    params = env.default_params() if params is None else params
    state = host_state(name, state)
    _, info = env._reward(state, params)
    if metrics is not None:
        info = {k: info[k] for k in metrics}
    title = f"{name}   step {int(state.step)}/{int(params.max_steps)}\n" + format_metrics(info)
    return state, params, title


def format_metrics(metrics: Mapping[str, Any]) -> str:
    """``name value`` pairs joined by ``·``; floats with 2 decimals, whole numbers as ints."""
    parts = []
    for name, value in metrics.items():
        value = float(np.asarray(value))
        text = f"{value:.0f}" if value.is_integer() else f"{value:.2f}"
        parts.append(f"{name.replace('_', ' ')} {text}")
    return " · ".join(parts)


def _colors(color: Color | Sequence[Color], n: int) -> list[Color]:
    if isinstance(color, str) or (isinstance(color, tuple) and len(color) in (3, 4)
                                  and all(isinstance(c, (int, float)) for c in color)):
        return [color] * n
    colors = list(color)
    if len(colors) != n:
        raise ValueError(f"expected one colour or {n} colours, got {len(colors)}")
    return colors


def _extent(points: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """Half-width of a square view that holds every disc, at least 1, in steps of 0.5."""
    reach = 1.0
    for pos, radius in points:
        if pos.size:
            reach = max(reach, float(np.max(np.abs(pos) + np.reshape(radius, (-1, 1)))))
    return float(np.ceil(reach * 1.05 / 0.5) * 0.5)


def draw_particles(agent_pos: Any, agent_radius: float | Any, *,
                   agent_color: Color | Sequence[Color] = AGENT_COLOR,
                   agent_labels: Sequence[str] | None = None,
                   landmark_pos: Any = None, landmark_radius: float = LANDMARK_RADIUS,
                   obstacle_pos: Any = None, obstacle_radius: float = 0.0,
                   target_pos: Any = None, target_heading: float | None = None,
                   capture_radius: float | None = None,
                   arena_half_width: float | None = None,
                   title: str = "", size: int | None = None) -> np.ndarray:
    """A 2-D particle world: agents as discs of their true radius (world units).

    ``agent_pos`` (N, 2); ``agent_radius`` a float or (N,); ``agent_color`` one colour or N.
    Optional: point landmarks (L, 2), obstacle discs (K, 2) of ``obstacle_radius``, a target
    point with its heading (radians) and a dashed ``capture_radius`` circle, and the walls of
    the square arena ``[-h, h]^2``. The view is square: the arena with a margin, else the
    smallest half-width >= 1 (in steps of 0.5) that shows every disc.
    """
    agent_pos = np.asarray(agent_pos, np.float64).reshape(-1, 2)
    n = agent_pos.shape[0]
    radii = np.broadcast_to(np.asarray(agent_radius, np.float64), (n,))
    colors = _colors(agent_color, n)
    landmarks = (np.zeros((0, 2)) if landmark_pos is None
                 else np.asarray(landmark_pos, np.float64).reshape(-1, 2))
    obstacles = (np.zeros((0, 2)) if obstacle_pos is None
                 else np.asarray(obstacle_pos, np.float64).reshape(-1, 2))
    target = None if target_pos is None else np.asarray(target_pos, np.float64).reshape(2)

    if arena_half_width is not None:
        half = float(arena_half_width) * 1.08
    else:
        discs = [(agent_pos, radii), (landmarks, np.full(len(landmarks), landmark_radius)),
                 (obstacles, np.full(len(obstacles), obstacle_radius))]
        if target is not None:
            discs.append((target[None], np.array([capture_radius or 0.0])))
        half = _extent(discs)

    fig = _figure(size)
    ax = fig.add_axes((0.02, 0.02, 0.96, 0.86))
    ax.set_xlim(-half, half)
    ax.set_ylim(-half, half)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_facecolor("white")
    if arena_half_width is not None:
        h = float(arena_half_width)
        ax.add_patch(Rectangle((-h, -h), 2 * h, 2 * h, fill=False, linewidth=2.0,
                               edgecolor="black"))
    for x, y in obstacles:
        ax.add_patch(Circle((x, y), obstacle_radius, color=OBSTACLE_COLOR, zorder=1))
    for x, y in landmarks:
        ax.add_patch(Circle((x, y), landmark_radius, color=LANDMARK_COLOR, alpha=0.6,
                            zorder=1))
    if target is not None:
        if capture_radius:
            ax.add_patch(Circle(tuple(target), capture_radius, fill=False, linestyle="--",
                                edgecolor=TARGET_COLOR, linewidth=1.0, zorder=2))
        ax.plot(*target, marker="*", markersize=12, color=TARGET_COLOR, zorder=4)
        if target_heading is not None:
            step = 0.12 * half
            ax.annotate("", xy=(target[0] + step * np.cos(target_heading),
                                target[1] + step * np.sin(target_heading)),
                        xytext=tuple(target), zorder=4,
                        arrowprops={"arrowstyle": "->", "color": TARGET_COLOR})
    for i, ((x, y), r, c) in enumerate(zip(agent_pos, radii, colors, strict=True)):
        ax.add_patch(Circle((x, y), r, facecolor=c, edgecolor="black", linewidth=0.8,
                            alpha=0.9, zorder=3))
        label = str(i) if agent_labels is None else agent_labels[i]
        if label:
            ax.text(x, y, label, ha="center", va="center", fontsize=6, zorder=5)
    _title(fig, title)
    return figure_to_array(fig)


def draw_grid(grid_size: int, agent_pos: Any, target_pos: Any, *,
              agent_color: Color | Sequence[Color] = AGENT_COLOR,
              title: str = "", size: int | None = None) -> np.ndarray:
    """A ``G × G`` grid of cells ``(x, y)`` (x right, y up): agents as numbered discs, the
    target as a red square; agents sharing a cell are drawn side by side."""
    agent_pos = np.asarray(agent_pos).reshape(-1, 2).astype(int)
    target = np.asarray(target_pos).reshape(2).astype(int)
    n, g = agent_pos.shape[0], int(grid_size)
    colors = _colors(agent_color, n)
    fig = _figure(size)
    ax = fig.add_axes((0.02, 0.02, 0.96, 0.86))
    ax.set_xlim(-0.5, g - 0.5)
    ax.set_ylim(-0.5, g - 0.5)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    for k in range(g + 1):
        ax.axhline(k - 0.5, color="0.75", linewidth=0.8)
        ax.axvline(k - 0.5, color="0.75", linewidth=0.8)
    ax.add_patch(Rectangle((target[0] - 0.45, target[1] - 0.45), 0.9, 0.9,
                           facecolor=TARGET_COLOR, alpha=0.35, edgecolor=TARGET_COLOR,
                           linewidth=1.5, zorder=1))
    ax.plot(*target, marker="*", markersize=10, color=TARGET_COLOR, zorder=2)
    cells: dict[tuple[int, int], list[int]] = {}
    for i, (x, y) in enumerate(agent_pos):
        cells.setdefault((int(x), int(y)), []).append(i)
    for (x, y), members in cells.items():
        k = len(members)
        radius = 0.3 if k == 1 else 0.38 / k
        for j, i in enumerate(members):
            dx = 0.0 if k == 1 else (j - (k - 1) / 2) * 2.1 * radius
            ax.add_patch(Circle((x + dx, y), radius, facecolor=colors[i], edgecolor="black",
                                linewidth=0.8, alpha=0.9, zorder=3))
            ax.text(x + dx, y, str(i), ha="center", va="center", fontsize=7, zorder=4)
    _title(fig, title)
    return figure_to_array(fig)


def draw_payoff_table(tables: Any, last_actions: Any = None, *,
                      action_labels: Sequence[str] | None = None,
                      title: str = "", size: int | None = None) -> np.ndarray:
    """A two-player payoff matrix, rows agent 0's action and columns agent 1's.

    ``tables`` (A, A) for a common payoff or (2, A, A) for each agent's own (cells read
    ``r0, r1``; two identical tables are drawn as one). ``last_actions`` (a_0, a_1), if
    given, is outlined and shaded as the last joint action.
    """
    tables = np.asarray(tables, np.float64)
    if tables.ndim == 3 and np.array_equal(tables[0], tables[1]):
        tables = tables[0]
    common = tables.ndim == 2
    shade = tables if common else tables.sum(axis=0)
    a = shade.shape[0]
    labels = [str(i) for i in range(a)] if action_labels is None else list(action_labels)
    fig = _figure(size)
    ax = fig.add_axes((0.16, 0.04, 0.8, 0.76))
    ax.imshow(shade, cmap="RdYlGn", alpha=0.45, origin="upper")
    ax.set_xticks(range(a), labels)
    ax.set_yticks(range(a), labels)
    ax.xaxis.tick_top()
    ax.set_xlabel("agent 1")
    ax.xaxis.set_label_position("top")
    ax.set_ylabel("agent 0")
    ax.tick_params(length=0)
    fontsize = 14 if a <= 3 and common else 11
    for r in range(a):
        for c in range(a):
            text = (f"{tables[r, c]:g}" if common
                    else f"{tables[0, r, c]:g}, {tables[1, r, c]:g}")
            ax.text(c, r, text, ha="center", va="center", fontsize=fontsize)
    if last_actions is not None:
        r, c = (int(v) for v in np.asarray(last_actions).reshape(2))
        ax.add_patch(Rectangle((c - 0.48, r - 0.48), 0.96, 0.96, fill=True,
                               facecolor=(0.2, 0.4, 1.0, 0.25), edgecolor=(0.1, 0.2, 0.9),
                               linewidth=3.0, zorder=3))
    _title(fig, title)
    return figure_to_array(fig)


def _title(fig: Figure, title: str) -> None:
    if title:
        fig.text(0.5, 0.985, title, ha="center", va="top", fontsize=8, linespacing=1.4)


# ----- episodes -------------------------------------------------------------------------
def _has_auto_reset(env: Env) -> bool:
    from jaxmarl_coop.envs.wrappers import AutoReset, Wrapper

    while isinstance(env, Wrapper):
        if isinstance(env, AutoReset):
            return True
        env = env._env
    return False


def rollout_frames(env: Env, params: Any, policy: Policy, key: jax.Array,
                   max_steps: int | None = None, *, size: int | None = None
                   ) -> list[np.ndarray]:
    """Play one episode of ``policy`` (a ``Policy``) and draw every state.

    Resets, then steps (one jitted step) until the episode ends (terminated or truncated)
    or ``max_steps`` steps were taken (default ``params.max_steps``). Returns the frames
    of the first state and of every state after it: ``length + 1`` frames. ``env`` must not
    auto-reset (its last frame would be the next episode's start); ``AgentID`` is fine.
    """
    if _has_auto_reset(env):
        raise ValueError("rollout_frames needs an env that does not auto-reset (the last "
                         "frame must be the episode's final state); pass the env without "
                         "AutoReset / wrap(...)")
    params = env.default_params() if params is None else params
    if max_steps is None:
        if not hasattr(params, "max_steps") and env.max_episode_steps is None:
            raise ValueError(f"{type(params).__name__} has no max_steps: pass max_steps")
        max_steps = episode_limit(env, params)
    if isinstance(max_steps, bool) or not isinstance(max_steps, (int, np.integer)) \
            or max_steps < 0:
        raise ValueError(f"max_steps must be an int >= 0, got {max_steps!r}")

    policy = check_policy(policy, "rollout_frames")

    @jax.jit
    def step(key: jax.Array, state: Any, ts: TimeStep, carry: Any, params: Any
             ) -> tuple[Any, TimeStep, Any]:
        k_act, k_step = jax.random.split(key)
        actions, carry = policy(k_act, ts, carry)
        return (*env.step(k_step, state, actions, params), carry)

    k_reset, key = jax.random.split(key)
    state, ts = env.reset(k_reset, params)
    carry = policy.initial_carry(None)  # one episode: no reset needed inside it
    frames = [env.render(state, params, size=size)]
    for _ in range(int(max_steps)):
        if bool(ts.done):
            break
        key, k_step = jax.random.split(key)
        state, ts, carry = step(k_step, state, ts, carry, params)
        frames.append(env.render(state, params, size=size))
    return frames


def save_gif(frames: Sequence[np.ndarray], path: str | os.PathLike[str], fps: float = 10
             ) -> Path:
    """Write ``frames`` (uint8 ``(H, W, 3)``, one shape) as a looping animated GIF.

    Written to a temporary file in the same folder and moved into place, so ``path`` is
    never half-written; parent folders are created. Pillow merges a frame identical to the
    one before into it (longer duration), so such a GIF has fewer frames than ``frames``.
    """
    from PIL import Image

    if len(frames) == 0:
        raise ValueError("save_gif needs at least one frame, got an empty list")
    if not np.isfinite(fps) or fps <= 0:
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    arrays = [np.asarray(f) for f in frames]
    shape = arrays[0].shape
    for i, f in enumerate(arrays):
        if f.dtype != np.uint8 or f.ndim != 3 or f.shape[2] != 3 or f.shape != shape:
            raise ValueError(f"frame {i} must be uint8 of shape {shape} (H, W, 3) like frame "
                             f"0, got {f.dtype} {f.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images = [Image.fromarray(f, mode="RGB") for f in arrays]
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                       duration=max(round(1000 / float(fps)), 10), loop=0)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def animate(env: Env, params: Any, policy: Policy, key: jax.Array,
            path: str | os.PathLike[str], max_steps: int | None = None, fps: float = 10, *,
            size: int | None = None) -> Path:
    """``rollout_frames`` then ``save_gif``: one episode of ``policy`` as a GIF at ``path``."""
    frames = rollout_frames(env, params, policy, key, max_steps, size=size)
    return save_gif(frames, path, fps=fps)
