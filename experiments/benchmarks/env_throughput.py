"""Environment throughput with auto-reset and random actions, against the peers.

Run from the repository root::

    python -m experiments.benchmarks.env_throughput                  # full run
    python -m experiments.benchmarks.env_throughput --quick --skip-peers   # smoke test

What is measured
----------------
* ``jaxmarl_coop``: ``VecEnv(AutoReset(env), B)`` for each env id. The whole rollout of ``T``
  steps (initial reset included) is one jitted function around a ``lax.scan``
  (``common.random_rollout``, the same loop for the peer); the random actions are drawn
  inside the scan. The scan consumes every step's observations, rewards and done flags
  through a running checksum so that XLA cannot drop any of them (a policy would read them
  all); whatever nothing reads (e.g. our ``global_state``) may be dropped.
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
import json  # noqa: E402
import os  # noqa: E402
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

from experiments.benchmarks.common import (  # noqa: E402
    PROBE_STEPS,
    QUICK_STEPS,
    benchmark_parser,
    cpu_sample,
    dist_version,
    fmt,
    jax_versions,
    jaxmarl_version,
    log,
    other_cpu_busy,
    others_busy,
    ours_rollout,
    own_cores,
    random_rollout,
    results_header,
    rollout_probe_steps,
    rollout_throughput,
    save_results,
    table,
    time_rollout,
)

OUR_ENVS = ("spread-v3", "tag-v3", "tracking-v1")
#: Our env id -> JaxMARL env id (envs without one have no JaxMARL row).
JAXMARL_IDS = {"spread-v3": "MPE_simple_spread_v3", "tag-v3": "MPE_simple_tag_v3"}
#: Our env id -> ``mpe2`` module name.
MPE2_MODULES = {"spread-v3": "simple_spread_v3", "tag-v3": "simple_tag_v3"}
DEFAULT_BATCH_SIZES = (1, 64, 1024, 8192)
DEFAULT_OUT = "runs/bench/env_throughput.json"
JSON_MARKER = "@@ENV_THROUGHPUT_JSON@@"  # prefixes the peer subprocess's result line


# --------------------------------------------------------------------------------------------
# ours
# --------------------------------------------------------------------------------------------
def bench_ours(env_id: str, batch: int, *, target_s: float, repeats: int,
               probe_steps: int) -> dict[str, Any]:
    make_rollout, params, num_agents = ours_rollout(env_id, batch)
    row = time_rollout(make_rollout, (params,), target_s=target_s, repeats=repeats,
                       probe_steps=rollout_probe_steps(probe_steps, batch, target_s))
    row.update(env=env_id, impl="jaxmarl_coop", peer_id=None, **jax_versions())
    return rollout_throughput(row, batch, num_agents)


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
    vreset = jax.vmap(env.reset)
    vstep = jax.vmap(env.step)  # JaxMARL's step auto-resets when dones["__all__"]

    def reset(key: jax.Array) -> tuple[Any, jax.Array]:
        obs, state = vreset(jax.random.split(key, batch))
        return state, sum(jnp.sum(o) for o in obs.values())

    def step(key: jax.Array, state: Any, acts: jax.Array) -> tuple[Any, jax.Array]:
        actions = {a: acts[:, i] for i, a in enumerate(agents)}
        obs, state, reward, dones, _ = vstep(jax.random.split(key, batch), state, actions)
        return state, (sum(jnp.sum(o) for o in obs.values())
                       + sum(jnp.sum(r) for r in reward.values()) + jnp.sum(dones["__all__"]))

    def make_rollout(steps: int) -> Callable[..., Any]:
        return random_rollout(reset, step, steps, batch, num_agents, num_actions)

    return make_rollout, num_agents


def jaxmarl_info() -> dict[str, Any]:
    """Import ``jaxmarl`` here (ImportError if missing) and describe it."""
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):  # jaxmarl prints on import
        import jaxmarl  # noqa: F401
    return {"status": "ok", "where": "in-process", "python": sys.executable,
            "jaxmarl_version": jaxmarl_version(), **jax_versions()}


def bench_jaxmarl(env_id: str, batch: int, *, target_s: float, repeats: int,
                  probe_steps: int) -> dict[str, Any]:
    """One JaxMARL row measured in this process."""
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        make_rollout, num_agents = jaxmarl_rollout(JAXMARL_IDS[env_id], batch)
    row = time_rollout(make_rollout, (), target_s=target_s, repeats=repeats,
                       probe_steps=rollout_probe_steps(probe_steps, batch, target_s))
    row.update(env=env_id, impl="jaxmarl", peer_id=JAXMARL_IDS[env_id],
               jaxmarl_version=jaxmarl_version(), **jax_versions())
    return rollout_throughput(row, batch, num_agents)


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
    cpu0 = cpu_sample()
    runs = [run(steps) for _ in range(repeats)]
    cpu1 = cpu_sample()
    busy, cores = others_busy(cpu0, cpu1), own_cores(cpu0, cpu1, sum(runs))
    row = {"env": env_id, "impl": "mpe2", "peer_id": f"mpe2.{MPE2_MODULES[env_id]}",
           "steps": steps, "warmup_steps": warmup, "run_s": runs,
           "median_run_s": statistics.median(runs), "lower_s": None, "compile_s": None,
           "trace_and_compile_s": None, "mpe2_version": dist_version("mpe2"),
           "pettingzoo_version": dist_version("pettingzoo"), "other_cpu_busy": busy,
           "own_cores_used": cores}
    return rollout_throughput(row, 1, len(agents))


# --------------------------------------------------------------------------------------------
# machine, report, output
# --------------------------------------------------------------------------------------------
def add_ratios(rows: list[dict[str, Any]]) -> None:
    """``ratio_vs_jaxmarl`` (same env and batch) and ``ratio_vs_mpe2`` (same env)."""
    peer = {(r["env"], r["batch"]): r["env_steps_per_s"] for r in rows if r["impl"] == "jaxmarl"}
    ref = {r["env"]: r["env_steps_per_s"] for r in rows if r["impl"] == "mpe2"}
    for r in rows:
        j = peer.get((r["env"], r["batch"]))
        m = ref.get(r["env"])
        r["ratio_vs_jaxmarl"] = r["env_steps_per_s"] / j if j and r["impl"] != "jaxmarl" else None
        r["ratio_vs_mpe2"] = r["env_steps_per_s"] / m if m and r["impl"] != "mpe2" else None


def format_table(rows: list[dict[str, Any]]) -> str:
    header = (f"{'env':<12} {'impl':<13} {'batch':>6} {'compile s':>9} {'env steps/s':>13} "
              f"{'agent steps/s':>14} {'vs JaxMARL':>10} {'vs mpe2':>9}")
    return table(header, (f"{r['env']:<12} {r['impl']:<13} {r['batch']:>6} "
                          f"{fmt(r.get('trace_and_compile_s'), '.2f'):>9} "
                          f"{r['env_steps_per_s']:>13,.0f} {r['agent_steps_per_s']:>14,.0f} "
                          f"{fmt(r.get('ratio_vs_jaxmarl'), '.2f'):>10} "
                          f"{fmt(r.get('ratio_vs_mpe2'), ',.0f'):>9}" for r in rows))


def _progress(row: dict[str, Any]) -> None:
    log(f"  {row['env']:<12} {row['impl']:<13} batch {row['batch']:>5}: "
        f"{row['env_steps_per_s']:>13,.0f} env steps/s (T={row['steps']}, "
        f"compile {fmt(row.get('trace_and_compile_s'), '.2f')} s)")


# --------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = benchmark_parser(__doc__, epilog=False)
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

    data = results_header(
        "env_throughput", argv, vars(args),
        "jitted lax.scan rollout of T steps with auto-reset and random actions drawn inside "
        "the scan; obs/reward/done consumed by a checksum; compile time reported separately; "
        "throughput = T*batch / median run time")
    data.update(peers={}, results=[])
    rows: list[dict[str, Any]] = data["results"]
    peers: dict[str, Any] = data["peers"]
    out = Path(args.out)

    def add(row: dict[str, Any]) -> None:
        """Print a finished row and save the file so far: a run stopped by a time limit keeps
        every row it measured (``complete`` stays false until the end)."""
        rows.append(row)
        _progress(row)
        data["complete"] = False
        save_results(out, data)

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
            peers["mpe2"] = {"status": "ok", "mpe2_version": dist_version("mpe2"),
                             "pettingzoo_version": dist_version("pettingzoo"),
                             "python": sys.executable}
        except ImportError as exc:
            peers["mpe2"] = {"status": "failed", "error": f"ImportError: {exc}"}
            print(f"mpe2 peer not measured: {exc}", file=sys.stderr)

    order = {"jaxmarl_coop": 0, "jaxmarl": 1, "mpe2": 2}
    rows.sort(key=lambda r: (args.envs.index(r["env"]), order[r["impl"]], r["batch"]))
    add_ratios(rows)
    data["machine"]["other_cpu_busy_end"] = other_cpu_busy()
    data["complete"] = True
    save_results(out, data)
    print(format_table(rows))
    versions = ", ".join(f"{name}: jax {info.get('jax_version')}"
                         for name, info in [("jaxmarl_coop", jax_versions()),
                                            ("JaxMARL", data["peers"].get("jaxmarl", {}))]
                         if info.get("jax_version"))
    print(f"\n{versions}; machine: {data['machine']['cpu_model']}, "
          f"{data['machine']['usable_cores']} cores, backend {jax.default_backend()}; "
          f"CPUs busy with other processes: "
          f"{fmt(data['machine']['other_cpu_busy_start'], '.0%')} before, "
          f"{fmt(data['machine']['other_cpu_busy_end'], '.0%')} after")
    busy = [r for r in rows if (r.get("other_cpu_busy") or 0) > 0.1]
    if busy:
        print("timed while other processes used >10% of the CPUs: " + ", ".join(
            f"{r['env']}/{r['impl']}/{r['batch']} ({r['other_cpu_busy']:.0%})" for r in busy))
    print(f"wrote {out}")
    return data


if __name__ == "__main__":
    main()
