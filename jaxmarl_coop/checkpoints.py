"""Checkpoints of whole runs with orbax: every seed's learner state plus a JSON record.

A checkpoint is one orbax step folder holding ``state`` (any pytree of arrays: the vmapped
learner state — params, optimiser state, env state, replay buffer, PRNG key, step counter —
and whatever else the run needs to continue exactly, e.g. the best parameters so far) and
``meta`` (JSON: the run's config, progress and :data:`FORMAT_VERSION`). Orbax writes each
step into a temporary folder and renames it when complete, so a run killed while saving
keeps its previous checkpoint.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

#: the run folder's format version (``runs.folder``); checkpoints of another are refused
from jaxmarl_coop.runs.folder import FORMAT_VERSION


class CheckpointError(ValueError):
    """A checkpoint that cannot be used (missing, or written by another format version)."""


def _manager(directory: str | os.PathLike[str], create: bool, max_to_keep: int = 2) -> Any:
    import orbax.checkpoint as ocp

    logging.getLogger("absl").setLevel(logging.WARNING)  # orbax logs every save at INFO
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=create,
                                           enable_async_checkpointing=False)
    return ocp.CheckpointManager(Path(directory).resolve(), options=options)


def save(directory: str | os.PathLike[str], step: int, state: Any, meta: dict[str, Any],
         max_to_keep: int = 2) -> Path:
    """Write checkpoint ``step`` (keeping the newest ``max_to_keep``); returns its folder."""
    import orbax.checkpoint as ocp

    leaves = jax.tree.leaves(state)
    meta = {**meta, "format_version": FORMAT_VERSION, "num_leaves": len(leaves)}
    with _manager(directory, create=True, max_to_keep=max_to_keep) as manager:
        manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(_payload(leaves)),
                                                   meta=ocp.args.JsonSave(meta)),
                     force=True)
        manager.wait_until_finished()
    return Path(directory) / str(step)


def _payload(leaves: list[Any]) -> dict[str, Any]:
    """The leaves orbax stores, by position; it refuses zero-size arrays (e.g. an env with no
    obstacles), which are rebuilt from the target structure on restore instead."""
    return {str(i): leaf for i, leaf in enumerate(leaves) if np.size(leaf) > 0}


def latest_step(directory: str | os.PathLike[str]) -> int | None:
    """The newest complete checkpoint step in ``directory`` (None if there is none)."""
    if not Path(directory).is_dir():
        return None
    with _manager(directory, create=False) as manager:
        return manager.latest_step()


def restore_meta(directory: str | os.PathLike[str], step: int | None = None
                 ) -> tuple[int, dict[str, Any]]:
    """``(step, meta)`` of checkpoint ``step`` (default: the newest); checks the version."""
    import orbax.checkpoint as ocp

    step = latest_step(directory) if step is None else step
    if step is None:
        raise CheckpointError(f"no checkpoint in {directory}")
    with _manager(directory, create=False) as manager:
        meta = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
    meta = dict(meta["meta"])
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {Path(directory) / str(step)} has format version {version!r}; this "
            f"version of jaxmarl_coop reads version {FORMAT_VERSION} only (train again, or use "
            "the jaxmarl_coop release that wrote it)")
    return step, meta


def restore(directory: str | os.PathLike[str], like: Any, step: int | None = None
            ) -> tuple[Any, dict[str, Any]]:
    """``(state, meta)`` of checkpoint ``step`` (default: the newest).

    ``like`` gives the structure, shapes and dtypes (e.g. ``jax.eval_shape(init, ...)``);
    a checkpoint that does not match it raises :class:`CheckpointError`.
    """
    import orbax.checkpoint as ocp

    step, meta = restore_meta(directory, step)
    where = Path(directory) / str(step)
    leaves, treedef = jax.tree.flatten(like)
    if meta.get("num_leaves") != len(leaves):
        raise CheckpointError(f"checkpoint {where} holds {meta.get('num_leaves')} arrays but "
                              f"this run's state has {len(leaves)}: not this run's checkpoint")
    abstract = _payload([jax.ShapeDtypeStruct(np.shape(x), x.dtype) for x in leaves])
    try:
        with _manager(directory, create=False) as manager:
            out = manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract)))
    except (ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"checkpoint {where} does not match this run's learner state: "
                              f"{str(err).splitlines()[0]}") from err
    stored = out["state"]
    restored = [stored[str(i)] if str(i) in stored else jnp.zeros(np.shape(x), x.dtype)
                for i, x in enumerate(leaves)]
    return jax.tree.unflatten(treedef, restored), meta
