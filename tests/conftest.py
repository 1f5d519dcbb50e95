"""Test setup: safe XLA flags before any JAX computation (see ``jaxmarl_coop.runtime``), and
the benchmark smoke tests' shared runner."""

import os
from pathlib import Path
from typing import Any

from jaxmarl_coop.runtime import configure_xla, jaxlib_knows

configure_xla()

#: an XLA flag for tests on XLA's quick compile path (below)
QUICK_COMPILE_FLAG = "--xla_cpu_use_fusion_emitters=false"

# One compiled program is built once per test run: JAX's persistent compilation cache, shared
# by the xdist workers and by the subprocesses the tests start (command lines, benchmarks,
# notebooks inherit the environment). Its keys hold the program, the compile options and the
# jax version, so a hit is the same executable; it lives in .pytest_cache (not in git).
# Set JAX_COMPILATION_CACHE_DIR yourself to move it, or to "" to compile everything afresh.
_CACHE = os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR",
    str(Path(__file__).resolve().parents[1] / ".pytest_cache" / "jax-compilation-cache"))
# Every program, however quick to compile: a resumed run's subprocess (the kill tests start
# eleven) otherwise recompiles its dozens of small ones (a warm second run: 10.0 s, not 11.6).
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
# Tests check what programs compute, not how fast: XLA's quick compile path (most optimisation
# passes off) takes almost half off the suite, the same on every worker and subprocess. Tests
# marked `optimised` compile as users' runs do (full optimisation), so that what holds for
# the programs users run is checked too; JAX_DISABLE_MOST_OPTIMIZATIONS=0 runs every test so.
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
# On the same quick path XLA's CPU backend compiles a training program in less than half the
# time with its older fusion code generator (MAPPO on spread, 2 seeds: 1.6 s, not 3.8 s;
# the whole suite: 18 CPU-minutes, not 29). XLA_FLAGS is read when a backend starts, so this
# holds for every worker and subprocess; a user's own setting of the flag wins, and a jaxlib
# without it is left alone. (With full optimisation the older generator compiles no faster
# and its programs run slower: runs keep XLA's default, and so do tests marked `optimised`,
# through a per-compile override below.)
_QUICK_FLAG_NAME = QUICK_COMPILE_FLAG.split("=", 1)[0].lstrip("-")
#: whether the suite set the flag (here, or in the process that started this xdist worker)
QUICK_FLAG_ADDED = os.environ.get("JAXMARL_COOP_TESTS_SET_QUICK_FLAG") == "1"
if not QUICK_FLAG_ADDED and (
        f"--{_QUICK_FLAG_NAME}" not in os.environ.get("XLA_FLAGS", "")
        and os.environ["JAX_DISABLE_MOST_OPTIMIZATIONS"].lower() in ("1", "true")
        and jaxlib_knows(_QUICK_FLAG_NAME)):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {QUICK_COMPILE_FLAG}".strip()
    os.environ["JAXMARL_COOP_TESTS_SET_QUICK_FLAG"] = "1"
    QUICK_FLAG_ADDED = True

import jax  # noqa: E402

#: whether tests not marked ``optimised`` compile on XLA's quick path
QUICK_COMPILE = os.environ["JAX_DISABLE_MOST_OPTIMIZATIONS"].lower() in ("1", "true")
jax.config.update("jax_disable_most_optimizations", QUICK_COMPILE)

if QUICK_FLAG_ADDED:
    from jax._src import compiler as _jax_compiler  # private: jax's compile options

    _get_compile_options = _jax_compiler.get_compile_options

    def _default_codegen_when_optimised(*args: Any, env_options_overrides: Any = None,
                                        **kwargs: Any) -> Any:
        """A program compiled with full optimisation (a test marked ``optimised``) gets
        XLA's default fusion code generator back: the flag above is for the quick path
        only. (XLA reads per-compile overrides over XLA_FLAGS; also in the cache key.)"""
        if not jax.config.values["jax_disable_most_optimizations"]:
            env_options_overrides = {_QUICK_FLAG_NAME: True, **(env_options_overrides or {})}
        return _get_compile_options(*args, env_options_overrides=env_options_overrides,
                                    **kwargs)

    _jax_compiler.get_compile_options = _default_codegen_when_optimised

if _CACHE:
    jax.config.update("jax_compilation_cache_dir", _CACHE)
    jax.config.update("jax_persistent_cache_min_compile_time_secs",
                      float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))

import json  # noqa: E402
import math  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from collections.abc import Callable  # noqa: E402

import pytest  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]


def finite(x: Any) -> bool:
    """A finite number, or a ``{"mean": ...}`` summary with a finite mean."""
    if isinstance(x, dict):
        x = x["mean"]
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


@pytest.fixture(autouse=True)
def _optimisation(request: pytest.FixtureRequest):
    """Programs compiled in a test marked ``optimised`` get XLA's full optimisation."""
    if request.node.get_closest_marker("optimised") is None:
        yield
        return
    before = jax.config.values["jax_disable_most_optimizations"]
    jax.config.update("jax_disable_most_optimizations", False)
    try:
        yield
    finally:
        jax.config.update("jax_disable_most_optimizations", before)


@pytest.fixture
def run_benchmark(tmp_path: Path) -> Callable[..., tuple[subprocess.CompletedProcess, dict,
                                                         Path]]:
    """``run_benchmark(name, *args, timeout=...)``: ``python -m experiments.benchmarks.NAME
    ARGS --out TMP/NAME`` from the repository root; asserts it exited 0 and left its
    results.json (and no temporary file); returns ``(process, results, out folder)``."""

    def run(name: str, *args: str, timeout: float = 280) -> tuple[subprocess.CompletedProcess,
                                                                   dict, Path]:
        out = tmp_path / name
        proc = subprocess.run(
            [sys.executable, "-m", f"experiments.benchmarks.{name}", *args, "--out", str(out)],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout, check=False)
        assert proc.returncode == 0, proc.stderr[-3000:]
        data = json.loads((out / "results.json").read_text())
        assert not list(out.glob("*.tmp"))  # the atomic writes left no temporary file
        return proc, data, out

    return run


#: test files by how long they take (most first; measured, 2-core CPU). The suite runs each
#: file on one of the workers (``-n 3``, ``--dist loadfile``) in collection order
#: (``--no-loadscope-reorder``), so the longest files start first and the many short ones
#: fill in behind them: no worker is left running a long file alone at the end.
#: Files not named here follow, in the usual order.
LONGEST_FIRST = (
    "test_train.py", "test_mechanisms_smoke.py", "test_learn_actor_critic_smoke.py",
    "test_notebooks.py", "learners/test_actor_critic.py", "learners/test_protocol.py",
    "envs/test_conformance.py", "test_load_policy.py", "learners/test_dqn.py",
    "learners/test_recurrent.py", "learners/test_recurrent_q.py", "test_memory_smoke.py",
    "envs/test_jaxmarl_adapter.py",
    "test_learn_independent_smoke.py", "test_runtime.py", "test_distributed.py",
    "learners/test_value_decomposition.py", "test_run_bad_input.py", "test_scaling_smoke.py",
    "test_plots.py", "learners/test_tabular_q.py",
)


#: files of bad-input checks, and words in a test's name that mark one
BAD_INPUT_FILES = ("test_bad_input.py", "test_run_bad_input.py", "test_hostile_input.py",
                   "test_learner_bad_input.py")
BAD_INPUT_WORDS = ("bad", "refuse", "error", "raise", "reject")


def _keeps_every_case(item: pytest.Item) -> bool:
    name = item.nodeid.split("::")[-1].split("[", 1)[0]
    return (Path(str(item.path)).name in BAD_INPUT_FILES
            or any(word in name for word in BAD_INPUT_WORDS))


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The edit loop (`-m "not slow"`) runs each parametrized test on its first case that is not
    # marked slow (every env, learner or setting: the full suite); its later cases are marked
    # slow here. Bad-input checks (cheap, and what edits break) keep every case.
    first_case: set[str] = set()
    for item in items:
        callspec = getattr(item, "callspec", None)
        if (callspec is None or item.get_closest_marker("slow") is not None
                or _keeps_every_case(item)):
            continue
        function = item.nodeid.split("[", 1)[0]
        if function in first_case:
            item.add_marker(pytest.mark.slow)
        first_case.add(function)

    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}

    def key(item: pytest.Item) -> int:
        path = Path(str(item.path)).relative_to(Path(__file__).parent).as_posix()
        return rank.get(path, len(rank))

    items.sort(key=key)  # stable: each file's tests keep their order
