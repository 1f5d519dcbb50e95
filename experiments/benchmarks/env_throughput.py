"""Environment throughput with auto-reset and random actions, against the peers.

Run from the repository root::

    python -m experiments.benchmarks.env_throughput                  # full run
    python -m experiments.benchmarks.env_throughput --quick --skip-peers   # smoke test

What is measured
----------------
* ``jaxmarl_coop``: ``VecEnv(AutoReset(env), B)`` for each env id. The whole rollout of ``T``
  steps (initial reset included) is one jitted function around a ``lax.scan``; the random
  actions are drawn inside the scan. The scan consumes every step's observations, rewards
  and done flags through a running checksum so that XLA cannot drop any of them (a policy
  would read them all); whatever nothing reads (e.g. our ``global_state``) may be dropped.
* ``jaxmarl``: JaxMARL's ``MPE_simple_spread_v3`` / ``MPE_simple_tag_v3`` (PyPI ``jaxmarl``),
  whose ``step`` auto-resets by itself, ``vmap``-ed over the batch, measured the same way.
  It runs in this process when ``import jaxmarl`` works, or in another interpreter given by
  ``--peer-python`` (this script re-invokes itself there with ``--only jaxmarl``).
* ``mpe2``: the reference ``simple_*_v3.parallel_env()``, one env, its normal Python API,
  random actions pre-generated as numpy ints, reset when ``env.agents`` is empty; median of
  three runs of ``--mpe2-steps`` steps after a warm-up.

Compile time (trace + lower + XLA compile, i.e. the wait before the first step) is reported
separately from the throughput, which is the median of ``--repeats`` timed runs, each lasting
about ``--target-seconds`` (``T`` is chosen per batch size from a short probe run).
"""

from jaxmarl_coop.runtime import configure_xla

configure_xla()  # before any JAX computation: safe XLA_FLAGS on small CPU machines

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from jaxmarl_coop.runs import write_json_atomic  # noqa: E402

OUR_ENVS = ("spread-v3", "tag-v3", "tracking-v1")
#: Our env id -> JaxMARL env id (envs without one have no JaxMARL row).
JAXMARL_IDS = {"spread-v3": "MPE_simple_spread_v3", "tag-v3": "MPE_simple_tag_v3"}
#: Our env id -> ``mpe2`` module name.
MPE2_MODULES = {"spread-v3": "simple_spread_v3", "tag-v3": "simple_tag_v3"}
DEFAULT_BATCH_SIZES = (1, 64, 1024, 8192)
DEFAULT_OUT = "runs/bench/env_throughput.json"
JSON_MARKER = "@@ENV_THROUGHPUT_JSON@@"  # prefixes the peer subprocess's result line
PROBE_STEPS = 64  # at least; small batches probe with ~PROBE_ENV_STEPS env steps
PROBE_ENV_STEPS = 1 << 16
QUICK_STEPS = 32  # --quick: this T, no calibration
MAX_STEPS = 1 << 20


# --------------------------------------------------------------------------------------------
# timing
# --------------------------------------------------------------------------------------------
def _cpu_sample() -> tuple[int, int, int] | None:
    """(all CPUs' ticks, idle ticks, this process's ticks) from /proc, or None."""
    try:
        with open("/proc/stat") as fh:
            values = [int(v) for v in fh.readline().split()[1:]]
        with open("/proc/self/stat") as fh:
            own = fh.read().rsplit(")", 1)[1].split()
        return sum(values), values[3] + values[4], int(own[11]) + int(own[12])
    except (OSError, ValueError, IndexError):
        return None


def _others_busy(start: tuple[int, int, int] | None, end: tuple[int, int, int] | None
                 ) -> float | None:
    """Fraction of all CPUs that *other* processes used between two ``_cpu_sample``s."""
    if start is None or end is None or end[0] <= start[0]:
        return None
    total = end[0] - start[0]
    busy = total - (end[1] - start[1]) - (end[2] - start[2])
    return min(1.0, max(0.0, busy / total))


def _own_cores(start: tuple[int, int, int] | None, end: tuple[int, int, int] | None,
               wall_s: float) -> float | None:
    """Cores this process kept busy on average over ``wall_s`` (JAX may use several)."""
    if start is None or end is None or wall_s <= 0:
        return None
    return (end[2] - start[2]) / os.sysconf("SC_CLK_TCK") / wall_s


def other_cpu_busy(seconds: float = 0.5) -> float | None:
    """Share of the CPUs other processes keep busy over ``seconds`` (this one excluded)."""
    start = _cpu_sample()
    time.sleep(seconds)
    return _others_busy(start, _cpu_sample())


def _compile(fn: Callable[..., Any], *args: Any) -> tuple[Any, float, float]:
    """``jax.jit(fn)`` lowered and compiled for ``args``: (compiled, lower_s, compile_s)."""
    t0 = time.perf_counter()
    lowered = jax.jit(fn).lower(*args)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    return compiled, t1 - t0, t2 - t1


def _timed_call(compiled: Any, *args: Any) -> float:
    t0 = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    return time.perf_counter() - t0


def time_rollout(make_rollout: Callable[[int], Callable[..., Any]], extra_args: tuple[Any, ...],
                 *, target_s: float, repeats: int, probe_steps: int) -> dict[str, Any]:
    """Time ``make_rollout(T)(key, *extra_args)``; ``T`` chosen so one run lasts ≈ target_s.

    A probe with ``probe_steps`` steps measures the time per step; unless it already lasts
    ``target_s`` the rollout is recompiled with the chosen ``T`` (so ``target_s <= 0`` means
    ``T = probe_steps``). Returns compile time (of the final ``T``), the per-run times and
    the median.
    """
    key = jax.random.PRNGKey(0)
    compiled, lower_s, compile_s = _compile(make_rollout(probe_steps), key, *extra_args)
    _timed_call(compiled, key, *extra_args)  # first run: allocations, thread pools
    probe_s = min(_timed_call(compiled, jax.random.PRNGKey(i), *extra_args) for i in (1, 2))
    steps = probe_steps
    if probe_s < target_s:
        per_step = max(probe_s, 1e-9) / probe_steps
        steps = min(MAX_STEPS, max(probe_steps, math.ceil(target_s / per_step / 8) * 8))
        compiled, lower_s, compile_s = _compile(make_rollout(steps), key, *extra_args)
        _timed_call(compiled, key, *extra_args)
    cpu0 = _cpu_sample()
    runs = [_timed_call(compiled, jax.random.PRNGKey(100 + i), *extra_args)
            for i in range(repeats)]
    return {"steps": steps, "lower_s": lower_s, "compile_s": compile_s,
            "trace_and_compile_s": lower_s + compile_s, "probe_steps": probe_steps,
            "probe_s": probe_s, "run_s": runs, "median_run_s": statistics.median(runs),
            "other_cpu_busy": _others_busy(cpu0, cpu1 := _cpu_sample()),
            "own_cores_used": _own_cores(cpu0, cpu1, sum(runs))}


def _probe_steps(probe_steps: int, batch: int, target_s: float) -> int:
    """Probe long enough that per-call overhead does not skew the estimate at small batch."""
    if target_s <= 0:  # --quick: T is the probe
        return probe_steps
    return max(probe_steps, PROBE_ENV_STEPS // batch)


def _throughput(row: dict[str, Any], batch: int, num_agents: int) -> dict[str, Any]:
    env_steps = row["steps"] * batch / row["median_run_s"]
    row.update(batch=batch, num_agents=num_agents, env_steps_per_s=env_steps,
               agent_steps_per_s=env_steps * num_agents)
    return row


# --------------------------------------------------------------------------------------------
# ours
# --------------------------------------------------------------------------------------------
def ours_rollout(env_id: str, batch: int, **env_kwargs: Any
                 ) -> tuple[Callable[[int], Callable[..., Any]], Any, int]:
    """(steps -> rollout(key, params), params, num_agents) for ``VecEnv(AutoReset(env))``;
    ``env_kwargs`` go to ``make`` (e.g. ``num_agents``)."""
    from jaxmarl_coop.envs import AutoReset, VecEnv, make

    env, params = make(env_id, **env_kwargs)
    if env.continuous_actions:
        raise ValueError(f"{env_id}: the benchmark draws discrete actions")
    venv = VecEnv(AutoReset(env), batch)
    num_agents, num_actions = env.num_agents, env.num_actions

    def make_rollout(steps: int) -> Callable[..., Any]:
        def rollout(key: jax.Array, params: Any) -> tuple[Any, jax.Array]:
            key, k_reset = jax.random.split(key)
            state, ts = venv.reset(k_reset, params)

            def body(carry: tuple[Any, jax.Array, jax.Array], _: None
                     ) -> tuple[tuple[Any, jax.Array, jax.Array], None]:
                state, key, acc = carry
                key, k_act, k_step = jax.random.split(key, 3)
                actions = jax.random.randint(k_act, (batch, num_agents), 0, num_actions,
                                             dtype=jnp.int32)
                state, ts = venv.step(k_step, state, actions, params)
                acc = acc + jnp.sum(ts.obs) + jnp.sum(ts.reward) + jnp.sum(ts.done)
                return (state, key, acc), None

            acc0 = jnp.sum(ts.obs)
            (state, _, acc), _ = jax.lax.scan(body, (state, key, acc0), None, length=steps)
            return state, acc

        return rollout

    return make_rollout, params, num_agents


def bench_ours(env_id: str, batch: int, *, target_s: float, repeats: int,
               probe_steps: int) -> dict[str, Any]:
    make_rollout, params, num_agents = ours_rollout(env_id, batch)
    row = time_rollout(make_rollout, (params,), target_s=target_s, repeats=repeats,
                       probe_steps=_probe_steps(probe_steps, batch, target_s))
    row.update(env=env_id, impl="jaxmarl_coop", peer_id=None, **_jax_versions())
    return _throughput(row, batch, num_agents)


# --------------------------------------------------------------------------------------------
# peer 1: JaxMARL
# --------------------------------------------------------------------------------------------
def jaxmarl_rollout(jaxmarl_id: str, batch: int) -> tuple[Callable[[int], Callable[..., Any]],
                                                          int]:
    """(steps -> rollout(key), num_agents) for JaxMARL's env, vmapped over the batch."""
    import jaxmarl

    env = jaxmarl.make(jaxmarl_id)
    agents = list(env.agents)
    num_agents = len(agents)
    num_actions = int(env.action_space(agents[0]).n)
    reset = jax.vmap(env.reset)
    step = jax.vmap(env.step)  # JaxMARL's step auto-resets when dones["__all__"]

    def make_rollout(steps: int) -> Callable[..., Any]:
        def rollout(key: jax.Array) -> tuple[Any, jax.Array]:
            key, k_reset = jax.random.split(key)
            obs, state = reset(jax.random.split(k_reset, batch))

            def body(carry: tuple[Any, jax.Array, jax.Array], _: None
                     ) -> tuple[tuple[Any, jax.Array, jax.Array], None]:
                state, key, acc = carry
                key, k_act, k_step = jax.random.split(key, 3)
                acts = jax.random.randint(k_act, (batch, num_agents), 0, num_actions,
                                          dtype=jnp.int32)
                actions = {a: acts[:, i] for i, a in enumerate(agents)}
                obs, state, reward, dones, _ = step(jax.random.split(k_step, batch), state,
                                                    actions)
                acc = (acc + sum(jnp.sum(o) for o in obs.values())
                       + sum(jnp.sum(r) for r in reward.values()) + jnp.sum(dones["__all__"]))
                return (state, key, acc), None

            acc0 = sum(jnp.sum(o) for o in obs.values())
            (state, _, acc), _ = jax.lax.scan(body, (state, key, acc0), None, length=steps)
            return state, acc

        return rollout

    return make_rollout, num_agents


def _jaxmarl_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("jaxmarl")
    except PackageNotFoundError:
        import jaxmarl

        return str(getattr(jaxmarl, "__version__", "unknown"))


def jaxmarl_info() -> dict[str, Any]:
    """Import ``jaxmarl`` here (ImportError if missing) and describe it."""
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):  # jaxmarl prints on import
        import jaxmarl  # noqa: F401
    return {"status": "ok", "where": "in-process", "python": sys.executable,
            "jaxmarl_version": _jaxmarl_version(), **_jax_versions()}


def bench_jaxmarl(env_id: str, batch: int, *, target_s: float, repeats: int,
                  probe_steps: int) -> dict[str, Any]:
    """One JaxMARL row measured in this process."""
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        make_rollout, num_agents = jaxmarl_rollout(JAXMARL_IDS[env_id], batch)
    row = time_rollout(make_rollout, (), target_s=target_s, repeats=repeats,
                       probe_steps=_probe_steps(probe_steps, batch, target_s))
    row.update(env=env_id, impl="jaxmarl", peer_id=JAXMARL_IDS[env_id],
               jaxmarl_version=_jaxmarl_version(), **_jax_versions())
    return _throughput(row, batch, num_agents)


def bench_jaxmarl_subprocess(python: str, args: argparse.Namespace, env_ids: Sequence[str]
                             ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run the JaxMARL part under another interpreter; it prints one JSON line back."""
    repo_root = Path(__file__).resolve().parents[2]
    cmd = [python, "-m", "experiments.benchmarks.env_throughput", "--only", "jaxmarl",
           "--envs", *env_ids, "--batch-sizes", *map(str, args.batch_sizes),
           "--repeats", str(args.repeats), "--target-seconds", str(args.target_seconds)]
    if args.quick:
        cmd.append("--quick")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(repo_root), env.get("PYTHONPATH")]))
    proc = subprocess.run(cmd, cwd=repo_root, env=env, capture_output=True, text=True,
                          check=False)
    sys.stderr.write(proc.stderr)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(JSON_MARKER)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"peer subprocess failed (exit {proc.returncode}): "
                           f"{proc.stderr.strip()[-500:]}")
    payload = json.loads(lines[-1][len(JSON_MARKER):])
    payload["info"].update(where="subprocess", command=cmd)
    return payload["rows"], payload["info"]


# --------------------------------------------------------------------------------------------
# peer 2: the reference mpe2 (plain Python, one env)
# --------------------------------------------------------------------------------------------
def bench_mpe2(env_id: str, *, steps: int, warmup: int, repeats: int = 3) -> dict[str, Any]:
    """Steps/s of one ``mpe2`` parallel env with pre-generated random actions."""
    import importlib

    module = importlib.import_module(f"mpe2.{MPE2_MODULES[env_id]}")
    env = module.parallel_env()
    env.reset(seed=0)
    agents = list(env.possible_agents)
    num_actions = int(env.action_space(agents[0]).n)
    rng = np.random.default_rng(0)

    def run(n: int) -> float:
        actions = rng.integers(0, num_actions, size=(n, len(agents)))
        t0 = time.perf_counter()
        for t in range(n):
            if not env.agents:
                env.reset()
            row = actions[t]
            env.step({a: row[i] for i, a in enumerate(agents)})
        return time.perf_counter() - t0

    run(warmup)
    cpu0 = _cpu_sample()
    runs = [run(steps) for _ in range(repeats)]
    cpu1 = _cpu_sample()
    busy, cores = _others_busy(cpu0, cpu1), _own_cores(cpu0, cpu1, sum(runs))
    row = {"env": env_id, "impl": "mpe2", "peer_id": f"mpe2.{MPE2_MODULES[env_id]}",
           "steps": steps, "warmup_steps": warmup, "run_s": runs,
           "median_run_s": statistics.median(runs), "lower_s": None, "compile_s": None,
           "trace_and_compile_s": None, "mpe2_version": _dist_version("mpe2"),
           "pettingzoo_version": _dist_version("pettingzoo"), "other_cpu_busy": busy,
           "own_cores_used": cores}
    return _throughput(row, 1, len(agents))


# --------------------------------------------------------------------------------------------
# machine, report, output
# --------------------------------------------------------------------------------------------
def _dist_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _jax_versions() -> dict[str, Any]:
    import jaxlib

    return {"jax_version": jax.__version__, "jaxlib_version": jaxlib.__version__,
            "backend": jax.default_backend()}


def machine_info() -> dict[str, Any]:
    """CPU model, core counts, load, Python/JAX versions and devices."""
    cpu_model = platform.processor() or None
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {"cpu_model": cpu_model, "cpu_count": os.cpu_count(), "usable_cores": usable,
            "loadavg_start": list(os.getloadavg()), "other_cpu_busy_start": other_cpu_busy(),
            "platform": platform.platform(),
            "python": platform.python_version(), "numpy_version": np.__version__,
            **_jax_versions(), "devices": [str(d) for d in jax.devices()],
            "xla_flags": os.environ.get("XLA_FLAGS", "")}


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """``ratio_vs_jaxmarl`` (same env and batch) and ``ratio_vs_mpe2`` (same env)."""
    peer = {(r["env"], r["batch"]): r["env_steps_per_s"] for r in rows if r["impl"] == "jaxmarl"}
    ref = {r["env"]: r["env_steps_per_s"] for r in rows if r["impl"] == "mpe2"}
    for r in rows:
        j = peer.get((r["env"], r["batch"]))
        m = ref.get(r["env"])
        r["ratio_vs_jaxmarl"] = r["env_steps_per_s"] / j if j and r["impl"] != "jaxmarl" else None
        r["ratio_vs_mpe2"] = r["env_steps_per_s"] / m if m and r["impl"] != "mpe2" else None


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def format_table(rows: list[dict[str, Any]]) -> str:
    header = (f"{'env':<12} {'impl':<13} {'batch':>6} {'compile s':>9} {'env steps/s':>13} "
              f"{'agent steps/s':>14} {'vs JaxMARL':>10} {'vs mpe2':>9}")
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(f"{r['env']:<12} {r['impl']:<13} {r['batch']:>6} "
                     f"{_fmt(r.get('trace_and_compile_s'), '.2f'):>9} "
                     f"{r['env_steps_per_s']:>13,.0f} {r['agent_steps_per_s']:>14,.0f} "
                     f"{_fmt(r.get('ratio_vs_jaxmarl'), '.2f'):>10} "
                     f"{_fmt(r.get('ratio_vs_mpe2'), ',.0f'):>9}")
    return "\n".join(lines)


def _progress(row: dict[str, Any]) -> None:
    print(f"  {row['env']:<12} {row['impl']:<13} batch {row['batch']:>5}: "
          f"{row['env_steps_per_s']:>13,.0f} env steps/s (T={row['steps']}, "
          f"compile {_fmt(row.get('trace_and_compile_s'), '.2f')} s)", file=sys.stderr,
          flush=True)


# --------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--envs", nargs="+", default=list(OUR_ENVS), choices=OUR_ENVS)
    p.add_argument("--batch-sizes", nargs="+", type=int, default=list(DEFAULT_BATCH_SIZES))
    p.add_argument("--repeats", type=int, default=5, help="timed runs per row (median)")
    p.add_argument("--target-seconds", type=float, default=None,
                   help=f"length of one timed run (default 0.5; --quick: T={QUICK_STEPS})")
    p.add_argument("--mpe2-steps", type=int, default=None,
                   help="steps per mpe2 run (default 5000, --quick 100)")
    p.add_argument("--skip-peers", action="store_true", help="only measure jaxmarl_coop")
    p.add_argument("--peer-python", default=None,
                   help="interpreter with jaxmarl installed, for the JaxMARL part "
                        "(default: this process, if `import jaxmarl` works)")
    p.add_argument("--quick", action="store_true", help="tiny runs, for a smoke test")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"JSON output (default {DEFAULT_OUT})")
    p.add_argument("--only", choices=["jaxmarl"], default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if any(b < 1 for b in args.batch_sizes) or args.repeats < 1:
        p.error("batch sizes and --repeats must be >= 1")
    if args.target_seconds is None:
        args.target_seconds = 0.0 if args.quick else 0.5
    if args.mpe2_steps is None:
        args.mpe2_steps = 100 if args.quick else 5000
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    probe = QUICK_STEPS if args.quick else PROBE_STEPS
    timing = {"target_s": args.target_seconds, "repeats": args.repeats, "probe_steps": probe}

    if args.only == "jaxmarl":  # peer subprocess: JaxMARL rows as one marked JSON line
        info = jaxmarl_info()
        rows = [bench_jaxmarl(e, b, **timing) for e in args.envs if e in JAXMARL_IDS
                for b in args.batch_sizes]
        print(JSON_MARKER + json.dumps({"rows": rows, "info": info}), flush=True)
        return {"rows": rows, "info": info}

    data: dict[str, Any] = {
        "benchmark": "env_throughput", "schema_version": 1,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": [sys.executable, "-m", "experiments.benchmarks.env_throughput",
                    *(sys.argv[1:] if argv is None else argv)],
        "machine": machine_info(),
        "settings": {**vars(args), "method": (
            "jitted lax.scan rollout of T steps with auto-reset and random actions drawn "
            "inside the scan; obs/reward/done consumed by a checksum; compile time reported "
            "separately; throughput = T*batch / median run time")},
        "peers": {}, "results": [],
    }
    rows: list[dict[str, Any]] = data["results"]
    peers: dict[str, Any] = data["peers"]
    out = Path(args.out)

    def add(row: dict[str, Any]) -> None:
        """Print a finished row and save the file so far: a run stopped by a time limit keeps
        every row it measured (``complete`` stays false until the end)."""
        rows.append(row)
        _progress(row)
        data["complete"] = False
        write_json_atomic(out, data)

    if args.skip_peers:
        peers.update(jaxmarl={"status": "skipped"}, mpe2={"status": "skipped"})
    elif not args.peer_python:
        try:
            peers["jaxmarl"] = jaxmarl_info()
        except ImportError as exc:
            peers["jaxmarl"] = {"status": "failed", "error": f"ImportError: {exc}"}
            print(f"JaxMARL peer not measured (try --peer-python): {exc}", file=sys.stderr)
    in_process = peers.get("jaxmarl", {}).get("where") == "in-process"

    # ours and the in-process JaxMARL row back to back, so that load from other processes
    # hits both sides of a ratio alike
    for env_id in args.envs:
        for batch in args.batch_sizes:
            add(bench_ours(env_id, batch, **timing))
            if in_process and env_id in JAXMARL_IDS:
                add(bench_jaxmarl(env_id, batch, **timing))

    if not args.skip_peers:
        peer_envs = [e for e in args.envs if e in JAXMARL_IDS]
        if args.peer_python and peer_envs:
            try:
                peer_rows, peers["jaxmarl"] = bench_jaxmarl_subprocess(args.peer_python, args,
                                                                       peer_envs)
                for r in peer_rows:
                    add(r)
            except RuntimeError as exc:
                peers["jaxmarl"] = {"status": "failed", "error": str(exc)}
                print(f"JaxMARL peer not measured: {exc}", file=sys.stderr)
        try:
            for env_id in args.envs:
                if env_id in MPE2_MODULES:
                    add(bench_mpe2(env_id, steps=args.mpe2_steps,
                                   warmup=min(500, args.mpe2_steps)))
            peers["mpe2"] = {"status": "ok", "mpe2_version": _dist_version("mpe2"),
                             "pettingzoo_version": _dist_version("pettingzoo"),
                             "python": sys.executable}
        except ImportError as exc:
            peers["mpe2"] = {"status": "failed", "error": f"ImportError: {exc}"}
            print(f"mpe2 peer not measured: {exc}", file=sys.stderr)

    order = {"jaxmarl_coop": 0, "jaxmarl": 1, "mpe2": 2}
    rows.sort(key=lambda r: (args.envs.index(r["env"]), order[r["impl"]], r["batch"]))
    add_ratios(rows)
    data["machine"]["loadavg_end"] = list(os.getloadavg())
    data["machine"]["other_cpu_busy_end"] = other_cpu_busy()
    data["complete"] = True
    write_json_atomic(out, data)
    print(format_table(rows))
    versions = ", ".join(f"{name}: jax {info.get('jax_version')}"
                         for name, info in [("jaxmarl_coop", _jax_versions()),
                                            ("JaxMARL", data["peers"].get("jaxmarl", {}))]
                         if info.get("jax_version"))
    print(f"\n{versions}; machine: {data['machine']['cpu_model']}, "
          f"{data['machine']['usable_cores']} cores, backend {jax.default_backend()}; "
          f"CPUs busy with other processes: "
          f"{_fmt(data['machine']['other_cpu_busy_start'], '.0%')} before, "
          f"{_fmt(data['machine']['other_cpu_busy_end'], '.0%')} after")
    busy = [r for r in rows if (r.get("other_cpu_busy") or 0) > 0.1]
    if busy:
        print("timed while other processes used >10% of the CPUs: " + ", ".join(
            f"{r['env']}/{r['impl']}/{r['batch']} ({r['other_cpu_busy']:.0%})" for r in busy))
    print(f"wrote {out}")
    return data


if __name__ == "__main__":
    main()
