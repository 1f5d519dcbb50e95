"""Settings applied where our entry points start JAX (tests, experiments, benchmarks).

On small CPU machines ``jit(vmap(train))`` programs have been seen to wait forever in
``Execute`` (jax 0.10, 2 cores). The cause we found (gdb on a hung process): flax's
orthogonal init runs a QR factorisation, under ``vmap`` a batched LAPACK call, and jaxlib's
CPU kernel for it splits the batch over XLA's intra-op thread pool and blocks on the pieces
from inside that pool. The actor's and the critic's QR run at once, both pool threads wait,
nothing runs the pieces. Our networks therefore initialise without LAPACK
(``learners.networks.orthogonal``), and a test checks that no learner's program contains a
LAPACK call. As a second line of defence ``configure_xla()`` turns off XLA's concurrency-optimised
CPU scheduler and Eigen's multi-threading through ``XLA_FLAGS`` before the backend
starts. It only adds a flag the installed jaxlib knows (an unknown flag in ``XLA_FLAGS``
aborts the process), never overrides a value the user set, and can be skipped with
``JAXMARL_COOP_KEEP_XLA_FLAGS=1``.
"""

from __future__ import annotations

import importlib.util
import mmap
import os
from pathlib import Path

#: Flags we add on every platform (each only if the installed jaxlib knows it). They make a
#: deadlock of the kind described above less likely (fewer kernels run at once) but did not
#: prevent it: with both set, 8 vmapped IPPO seeds still hung until the init stopped using
#: LAPACK. Without them, with the LAPACK-free init, the same program ran at the same speed.
SAFE_XLA_FLAGS = ("--xla_cpu_enable_concurrency_optimized_scheduler=false",
                  "--xla_cpu_multi_thread_eigen=false")


def jaxlib_knows(flag_name: str) -> bool:
    """Whether the installed jaxlib has an XLA flag of this name (``XLA_FLAGS`` aborts the
    process on a flag it does not know): its name appears in one of jaxlib's libraries."""
    spec = importlib.util.find_spec("jaxlib")
    if spec is None or not spec.submodule_search_locations:
        return False
    needle = flag_name.encode()
    for folder in spec.submodule_search_locations:
        for lib in Path(folder).glob("*.so"):
            try:
                with open(lib, "rb") as fh, mmap.mmap(fh.fileno(), 0,
                                                       access=mmap.ACCESS_READ) as data:
                    if data.find(needle) != -1:
                        return True
            except (OSError, ValueError):
                continue
    return False


def configure_xla() -> list[str]:
    """Add ``SAFE_XLA_FLAGS`` to ``XLA_FLAGS``; returns the flags added.

    Call it before the first JAX computation (importing jax is fine; the flags are read
    when the backend starts).
    """
    if os.environ.get("JAXMARL_COOP_KEEP_XLA_FLAGS") == "1":
        return []
    current = os.environ.get("XLA_FLAGS", "")
    added = []
    for flag in SAFE_XLA_FLAGS:
        name = flag.split("=", 1)[0]
        if name in current or not jaxlib_knows(name.lstrip("-")):
            continue
        added.append(flag)
    if added:
        os.environ["XLA_FLAGS"] = " ".join([current, *added]).strip()
    return added


CPU_DEVICE_COUNT_FLAG = "--xla_force_host_platform_device_count"


def set_cpu_device_count(count: int) -> None:
    """Make the CPU backend expose ``count`` devices (``XLA_FLAGS``), so that work sharded
    over devices (``jaxmarl_coop.parallel``) runs on several cores at once.

    Call it before the first JAX computation; the caller should then check
    ``jax.local_device_count()``. ``ValueError`` for a count below 1 or when ``XLA_FLAGS``
    already asks for a different count.
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"the CPU device count must be an integer >= 1, got {count!r}")
    current = os.environ.get("XLA_FLAGS", "")
    for flag in current.split():
        if flag.startswith(CPU_DEVICE_COUNT_FLAG + "="):
            if flag.split("=", 1)[1] != str(count):
                raise ValueError(f"XLA_FLAGS already sets {flag}; asked for {count} devices")
            return
    os.environ["XLA_FLAGS"] = f"{current} {CPU_DEVICE_COUNT_FLAG}={count}".strip()
