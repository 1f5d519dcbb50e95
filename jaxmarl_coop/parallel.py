"""Seeds and hyperparameter settings sharded over local devices, as one jitted program.

A grid of runs is a leading axis of length G on the keys and on every hyperparameter leaf;
``run_grid(fn, keys, hps)`` is ``jax.jit(jax.vmap(fn))(keys, hps)`` with that axis split
over a one-axis device mesh (``jax.sharding``: ``Mesh`` + ``NamedSharding``, no ``pmap``).
Each lane of a vmap is independent, so the results equal a single-device run up to float
rounding. ``grid(...)`` builds the flat hyperparameter arrays of a cartesian sweep.

    mesh = seed_mesh()                                  # every local device
    hps, labels = grid(seeds=8, lr=[3e-4, 1e-3], ent_coef=[0.0, 0.01])
    keys = jax.random.split(jax.random.PRNGKey(0), 8)[labels["seed"]]
    hp = stack_hyperparams(config.hyperparams(**hps), len(keys))
    state, metrics = run_grid(learner.train, keys, hp, mesh)

Fake several CPU devices for tests with ``XLA_FLAGS=--xla_force_host_platform_device_count=N``
(set before JAX starts its backend).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

#: the name of the mesh axis the grid (seed) axis is split over
AXIS = "batch"


def seed_mesh(devices: int | None = None) -> Mesh:
    """A one-axis mesh (axis :data:`AXIS`) over the first ``devices`` local devices.

    ``None``: every local device. ``ValueError`` if ``devices`` is not an integer >= 1 or
    more devices are asked for than this process has.
    """
    available = jax.local_devices()
    if devices is None:
        devices = len(available)
    if isinstance(devices, bool) or not isinstance(devices, (int, np.integer)) or devices < 1:
        raise ValueError(f"devices must be an integer >= 1, got {devices!r}")
    devices = int(devices)
    if devices > len(available):
        raise ValueError(f"{devices} devices requested but only {len(available)} local "
                         f"device(s) ({jax.default_backend()}) are available")
    chosen = available[:devices]
    if hasattr(jax, "make_mesh"):
        # Auto axes: plain jit/vmap code keeps working (make_mesh's default is Explicit)
        return jax.make_mesh((devices,), (AXIS,), (jax.sharding.AxisType.Auto,),
                             devices=chosen)
    return Mesh(np.asarray(chosen), (AXIS,))  # pragma: no cover - older jax


def _leading(x: Any) -> int | None:
    shape = getattr(x, "shape", None)
    return int(shape[0]) if shape else None


def _check_leading(tree: Any, multiple_of: int | None = None, what: str = "leaf"
                   ) -> int:
    """The common leading-axis length of every leaf (``ValueError`` naming a bad leaf)."""
    leaves = jax.tree_util.tree_leaves_with_path(tree)
    if not leaves:
        raise ValueError(f"no arrays to shard (an empty {what} tree)")
    lengths = set()
    for path, leaf in leaves:
        n = _leading(leaf)
        name = jax.tree_util.keystr(path) or "the leaf"
        shape = getattr(leaf, "shape", ())
        if n is None:
            raise ValueError(f"{what} {name} of shape {tuple(shape)} has no leading axis "
                             "to shard")
        if multiple_of is not None and n % multiple_of:
            raise ValueError(f"{what} {name} of shape {tuple(shape)}: its leading axis {n} "
                             f"does not divide over {multiple_of} devices")
        lengths.add(n)
    if len(lengths) > 1:
        raise ValueError(f"every {what} needs the same leading (grid) axis; got lengths "
                         f"{sorted(lengths)}")
    return lengths.pop()


def shard_leading(tree: Any, mesh: Mesh) -> Any:
    """``jax.device_put`` every leaf split along its leading axis over ``mesh``.

    The sharding is ``NamedSharding(mesh, PartitionSpec(AXIS))``; ``ValueError`` naming the
    leaf and its shape when a leading axis does not divide by the mesh size.
    """
    _check_leading(tree, mesh.size)
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec(AXIS)))


def run_grid(fn: Callable[[Any, Any], Any], keys: Any, hps: Any,
             mesh: Mesh | None = None) -> Any:
    """``jax.jit(jax.vmap(fn))(keys, hps)`` with the grid axis sharded over ``mesh``.

    ``keys`` and every leaf of ``hps`` have the same leading (grid) length G; ``fn(key, hp)``
    is any function of one grid point (e.g. ``learner.train``). ``mesh`` defaults to
    :func:`seed_mesh` (every local device). When G does not divide by the mesh size the grid
    is padded to the next multiple by repeating its last entry, and the padding is dropped
    from every output leaf.

    Output sharding: when G divides by the mesh size, every output leaf is
    ``NamedSharding(mesh, PartitionSpec(AXIS))`` (split like the inputs, nothing gathered).
    When padding was dropped, G cannot be split evenly, so the trimmed leaves are
    ``NamedSharding(mesh, PartitionSpec())``: the computation still runs split over the
    devices, and its outputs are gathered onto every device at the end (return only what
    you need from ``fn`` when outputs are large). Each call traces and compiles once.
    """
    mesh = seed_mesh() if mesh is None else mesh
    size = _check_leading((keys, hps), what="grid input")
    if size == 0:
        raise ValueError("the grid axis has length 0: nothing to run")
    devices = mesh.size
    padded = -(-size // devices) * devices
    if padded != size:
        index = np.concatenate([np.arange(size), np.full(padded - size, size - 1)])
        keys, hps = jax.tree.map(lambda x: x[index], (keys, hps))
    split = NamedSharding(mesh, PartitionSpec(AXIS))
    keys, hps = shard_leading((keys, hps), mesh)
    batched = jax.vmap(fn)
    if padded == size:
        return jax.jit(batched, out_shardings=split)(keys, hps)

    def trimmed(k: Any, h: Any) -> Any:
        out = jax.lax.with_sharding_constraint(batched(k, h), split)  # compute split
        return jax.tree.map(lambda x: x[:size], out)

    return jax.jit(trimmed, out_shardings=NamedSharding(mesh, PartitionSpec()))(keys, hps)


def grid(seeds: int = 1, **axes: Sequence[Any]) -> tuple[dict[str, np.ndarray],
                                                         dict[str, np.ndarray]]:
    """The cartesian product of ``axes`` (name -> list of values), each point ``seeds`` times.

    Returns ``(values, labels)``: ``values[name]`` is a flat array of length
    ``points * seeds`` (points in ``itertools.product`` order, the last axis fastest; the
    seeds of one point adjacent), and ``labels`` holds ``point`` (the index of each entry's
    grid point) and ``seed`` (its seed index, 0 .. seeds-1), both int arrays of that length.
    ``values[name][labels["point"] == p]`` are point ``p``'s settings. ``ValueError`` naming
    an axis with no values, or for ``seeds < 1``.
    """
    if isinstance(seeds, bool) or not isinstance(seeds, (int, np.integer)) or seeds < 1:
        raise ValueError(f"seeds must be an integer >= 1, got {seeds!r}")
    columns = {}
    for name, values in axes.items():
        arr = np.asarray(values)
        if arr.ndim != 1:
            raise ValueError(f"grid axis {name!r} must be a flat list of values, got shape "
                             f"{arr.shape}")
        if arr.size == 0:
            raise ValueError(f"grid axis {name!r} has no values")
        columns[name] = arr
    points = math.prod(len(v) for v in columns.values())
    combos = list(itertools.product(*(range(len(v)) for v in columns.values())))
    point = np.repeat(np.arange(points), seeds)
    values = {name: np.repeat(col[[c[i] for c in combos]], seeds)
              for i, (name, col) in enumerate(columns.items())}
    labels = {"point": point, "seed": np.tile(np.arange(seeds), points)}
    return values, labels
