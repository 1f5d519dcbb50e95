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

Several processes (hosts) run one program with JAX's own machinery: every process calls
:func:`initialize_distributed` (``jax.distributed.initialize``) before any other JAX use,
then builds the same global mesh with ``seed_mesh(devices, global_devices=True)``
(``devices`` of every process's local devices, process-major) and runs the same code.
:func:`shard_leading` lets each process supply only its own slice of the grid
(``jax.make_array_from_callback``), :func:`run_grid` is unchanged, and :func:`gather`
brings the whole result to every process (``multihost_utils.process_allgather``, a
collective: every process calls it). Only process 0 writes results
(:func:`is_main_process`); :func:`broadcast_text` shares a decision of process 0 (an output
path, an error message) so that every process takes the same branch.

    initialize_distributed()                            # Slurm, TPU pods, ...: auto-detected
    mesh = seed_mesh(global_devices=True)               # every device of every process
    out = gather(run_grid(learner.train, keys, hp, mesh))
    if is_main_process():
        ...write out...
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


def initialize_distributed(coordinator_address: str | None = None,
                           num_processes: int | None = None,
                           process_id: int | None = None, **kwargs: Any) -> tuple[int, int]:
    """``jax.distributed.initialize`` with the arguments given; returns ``(process, count)``.

    Arguments left ``None`` are not passed, so JAX detects them (Slurm, Open MPI, TPU pods,
    Kubernetes, ... or the ``JAX_COORDINATOR_ADDRESS`` environment variable). Call it in every
    process before any other JAX use (a computation, ``jax.devices()``); ``kwargs`` go to
    ``jax.distributed.initialize`` as they are (e.g. ``initialization_timeout``).
    """
    given = {"coordinator_address": coordinator_address, "num_processes": num_processes,
             "process_id": process_id}
    jax.distributed.initialize(**{k: v for k, v in given.items() if v is not None}, **kwargs)
    return jax.process_index(), jax.process_count()


def is_main_process() -> bool:
    """Whether this is process 0 (the one that writes results); True without distribution."""
    return jax.process_index() == 0


def _per_process(devices: Sequence[Any]) -> dict[int, list[Any]]:
    """Devices grouped by their process, each group in id order."""
    groups: dict[int, list[Any]] = {}
    for d in sorted(devices, key=lambda d: (d.process_index, d.id)):
        groups.setdefault(d.process_index, []).append(d)
    return groups


def seed_mesh(devices: int | None = None, global_devices: bool = False,
              all_devices: Sequence[Any] | None = None) -> Mesh:
    """A one-axis mesh (axis :data:`AXIS`) over the first ``devices`` local devices.

    ``None``: every local device. ``ValueError`` if ``devices`` is not an integer >= 1 or
    more devices are asked for than this process has.

    ``global_devices=True``: a mesh over every process (after :func:`initialize_distributed`):
    the first ``devices`` local devices of each process (``None``: all of them), ordered
    process by process, so each process holds one contiguous block of the grid axis. Every
    process must have the same number of devices. ``all_devices`` replaces ``jax.devices()``
    (tests; objects with ``id`` and ``process_index``).
    """
    if global_devices:
        groups = _per_process(jax.devices() if all_devices is None else all_devices)
    else:
        groups = {0: list(jax.local_devices() if all_devices is None else all_devices)}
    counts = {len(g) for g in groups.values()}
    if len(counts) > 1:
        raise ValueError("every process needs the same number of devices; got "
                         + ", ".join(f"process {p}: {len(g)}" for p, g in groups.items()))
    have = counts.pop()
    if devices is None:
        devices = have
    if isinstance(devices, bool) or not isinstance(devices, (int, np.integer)) or devices < 1:
        raise ValueError(f"devices must be an integer >= 1, got {devices!r}")
    devices = int(devices)
    if devices > have:
        backend = jax.default_backend() if all_devices is None else "given"
        if global_devices:
            raise ValueError(f"{devices} devices per process requested but each of the "
                             f"{len(groups)} processes has only {have} ({backend})")
        raise ValueError(f"{devices} devices requested but only {have} local "
                         f"device(s) ({backend}) are available")
    chosen = [d for g in groups.values() for d in g[:devices]]
    if all_devices is None and hasattr(jax, "make_mesh"):
        # Auto axes: plain jit/vmap code keeps working (make_mesh's default is Explicit)
        return jax.make_mesh((len(chosen),), (AXIS,), (jax.sharding.AxisType.Auto,),
                             devices=chosen)
    return Mesh(np.asarray(chosen, dtype=object), (AXIS,))


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


def leading_sharding(mesh: Mesh) -> NamedSharding:
    """Split along the leading (seed) axis over ``mesh``: what :func:`shard_leading` puts and
    what a vmapped program over it should return (``jax.jit(..., out_shardings=...)``), so
    that its outputs can be fed back without a second compile."""
    return NamedSharding(mesh, PartitionSpec(AXIS))


def shard_leading(tree: Any, mesh: Mesh) -> Any:
    """``jax.device_put`` every leaf split along its leading axis over ``mesh``.

    The sharding is ``NamedSharding(mesh, PartitionSpec(AXIS))``; ``ValueError`` naming the
    leaf and its shape when a leading axis does not divide by the mesh size.

    Over a mesh spanning several processes every process passes the same whole ``tree``
    (cheap host values: keys, hyperparameters, a restored state) and each puts only the
    slices of its own devices (``jax.make_array_from_callback``); nothing moves between
    processes.
    """
    _check_leading(tree, mesh.size)
    sharding = leading_sharding(mesh)
    if sharding.is_fully_addressable:
        return jax.device_put(tree, sharding)
    return jax.tree.map(lambda x: _from_process_slices(x, sharding), tree)


def _from_process_slices(x: Any, sharding: NamedSharding) -> jax.Array:
    if isinstance(x, jax.Array) and not x.is_fully_addressable:  # already global: reshard
        return jax.device_put(x, sharding)
    if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        impl = jax.random.key_impl(x)
        return jax.random.wrap_key_data(_from_process_slices(jax.random.key_data(x), sharding),
                                        impl=impl)
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def gather(tree: Any) -> Any:
    """Every leaf as a whole host (numpy) array, in every process.

    Arrays spread over several processes are gathered with
    ``jax.experimental.multihost_utils.process_allgather`` (a collective: every process must
    call ``gather`` with the same tree); the rest come from ``jax.device_get``.
    """
    from jax.experimental import multihost_utils

    def one(x: Any) -> Any:
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return jax.device_get(x)

    return jax.tree.map(one, tree)


def broadcast_text(text: str) -> str:
    """Process 0's ``text`` in every process (``text`` itself with one process).

    Every process must call it; used so that all take the same branch (an output folder, a
    user error found by process 0 only).
    """
    if jax.process_count() == 1:
        return text
    from jax.experimental import multihost_utils

    data = np.frombuffer(text.encode(), np.uint8)
    size = int(multihost_utils.broadcast_one_to_all(np.int32(data.size)))
    padded = np.zeros(size, np.uint8)
    padded[:min(size, data.size)] = data[:size]
    return bytes(np.asarray(multihost_utils.broadcast_one_to_all(padded))).decode()


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

    Over a mesh spanning several processes (``seed_mesh(global_devices=True)``) every
    process calls ``run_grid`` with the same inputs and gets global arrays; :func:`gather`
    them for their values.
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
    split = leading_sharding(mesh)
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
