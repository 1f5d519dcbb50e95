"""A trained team from a run folder, in one call: ``load_policy(path) -> (policy, env,
env_params)``, ready for ``evaluate``, ``render.animate`` and the PettingZoo adapter.

    from jaxmarl_coop import load_policy
    from jaxmarl_coop.learners.evaluation import evaluate

    policy, env, env_params = load_policy("runs/mappo-spread-v3-20261206-101500", "best")
    figures = evaluate(env, env_params, policy, jax.random.PRNGKey(0), num_episodes=64)

The learner is rebuilt from the folder's config.json and the parameters are restored from
its newest orbax checkpoint: ``which="final"`` the learner's parameters at that checkpoint
(the end of a finished run), ``"best"`` the best periodic evaluation's parameters so far.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from jaxmarl_coop.envs.policy import Policy
from jaxmarl_coop.runs.config import UsageError
from jaxmarl_coop.runs.training import Run, load_run_config

WHICH = ("final", "best")


def load_team(path: str | Path, which: str = "final") -> tuple[Run, Any, dict[str, Any]]:
    """``(run, params, meta)``: the rebuilt :class:`~jaxmarl_coop.runs.training.Run`, every
    seed's restored policy parameters (leading seed axis) and the checkpoint's record."""
    if which not in WHICH:
        raise UsageError(f"which must be one of {', '.join(WHICH)}, got {which!r}")
    path = Path(path)
    r = Run(load_run_config(path), path)
    state, meta = r.restore()
    if which == "best":
        if not bool(jnp.all(jnp.isfinite(state["best_score"]))):
            raise UsageError(f"{path}: the checkpoint has no periodic evaluation yet, so no "
                             "best parameters; use which='final'")
        return r, state["best_params"], meta
    return r, r.policy_params(state["learner"]), meta


def load_policy(path: str | Path, which: str = "final", seed: int = 0, greedy: bool = True
                ) -> tuple[Policy, Any, Any]:
    """``(policy, env, env_params)``: seed ``seed``'s trained team of the run folder
    ``path`` (``which``: ``"final"`` or ``"best"`` parameters), greedy or sampling."""
    r, params, _ = load_team(path, which)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < r.run.seeds:
        raise UsageError(f"seed {seed!r} is not one of the run's {r.run.seeds} seeds "
                         f"(0..{r.run.seeds - 1})")
    one = jax.tree.map(lambda x: x[seed], params)
    return r.policy(one, greedy=greedy), r.env, r.env_params
