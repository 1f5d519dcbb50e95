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

import sys
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from jaxmarl_coop.envs.policy import Policy
from jaxmarl_coop.runs.config import UsageError
from jaxmarl_coop.runs.training import Run, _skipped_line, open_run

WHICH = ("final", "best")


def load_team(path: str | Path, which: str = "final") -> tuple[Run, Any, dict[str, Any]]:
    """``(run, params, meta)``: the rebuilt :class:`~jaxmarl_coop.runs.training.Run`, every
    seed's restored policy parameters (leading seed axis) and the checkpoint's record.

    The newest intact checkpoint is used, and its settings must agree with config.json
    (``UsageError`` otherwise, see ``training.open_run``); unreadable newer ones are skipped
    with a one-line warning on stderr and left as they are (nothing in the folder changes).
    """
    if which not in WHICH:
        raise UsageError(f"which must be one of {', '.join(WHICH)}, got {which!r}")
    path = Path(path)
    opened = open_run(path)
    r, restored = opened.run, opened.restored
    if restored.skipped:
        print(f"warning: {_skipped_line(restored)}; left in place; using checkpoint "
              f"{restored.step} (update {restored.meta['updates_done']} of "
              f"{r.config.num_updates}) of {path}", file=sys.stderr, flush=True)
    state, meta = restored.state, restored.meta
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
