"""A run, from names to a run folder: build it, loop over jitted chunks, evaluate, checkpoint.

    from jaxmarl_coop import run
    from jaxmarl_coop.runs import RunConfig

    result = run(RunConfig(learner="mappo", env="spread-v3", seeds=4, env_steps=200_000))
    result.path, result.evaluation["final"]["return"]["mean"]

A run is a Python loop over jitted chunks of ``learner.update`` (the same function
``learner.train`` scans), vmapped over seeds. Between chunks: a progress bar, the per-update
metrics rewritten atomically to metrics.csv (and any extra loggers), every ``eval_every``
chunks a greedy evaluation (the best parameters of each seed are kept), and every
``checkpoint_every`` chunks an orbax checkpoint of the whole state. ``resume=True`` continues
from the newest intact checkpoint and ends exactly where the uninterrupted run would; the
checkpoint's settings must agree with config.json, and a larger ``env_steps`` extends the
run (:func:`open_run`, :mod:`~jaxmarl_coop.runs.resume`; the rules: docs/bad-input.md). The
folder's files are described in :mod:`jaxmarl_coop.runs.folder`.

Several processes (``distributed=True``, after ``jax.distributed.initialize``): the seeds are
split over one global mesh, results are gathered to every process and only process 0 writes.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import sys
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from jaxmarl_coop import checkpoints, parallel
from jaxmarl_coop.envs import make, random_policy, reference_policies
from jaxmarl_coop.learners import registry
from jaxmarl_coop.learners.base import stack_hyperparams
from jaxmarl_coop.learners.evaluation import evaluate
from jaxmarl_coop.runs import folder
from jaxmarl_coop.runs import resume as resume_rules
from jaxmarl_coop.runs.config import RunConfig, UsageError, parse_pairs
from jaxmarl_coop.runs.io import _jsonable, mean_ci95, write_json_atomic

#: eval_key index of the final evaluation (periodic ones use the chunk number)
FINAL_EVAL = 1_000_000


@dataclasses.dataclass(frozen=True)
class RunResult:
    """What :func:`run` returns: the run folder and its eval.json content (``evaluation``),
    or, for a run stopped early (``stop_after_chunks``), the chunks done."""

    path: Path
    evaluation: dict[str, Any] | None
    stopped_after_chunk: int | None = None


@dataclasses.dataclass(frozen=True)
class Built:
    """A run's parts, built from its names (:func:`build`)."""

    spec: registry.LearnerSpec
    env: Any
    env_params: Any
    config: Any
    hp: Any
    learner: Any
    chunks: int


def build(run: RunConfig) -> Built:
    """Env, learner config, hyperparameters and learner of ``run`` (``UsageError`` if bad).

    ``num_updates`` is the fewest updates reaching ``env_steps``, rounded up to whole chunks.
    Nothing is compiled: a bad value is refused before any JAX work, in one line naming it.
    """
    spec = registry.get_learner(run.learner)
    try:
        user_env = parse_pairs(run.env_param, "--env-param")
        env, env_params = make(run.env, **user_env)
        _check_given("--env-param", user_env, env_params, env.default_params())
        user_config = parse_pairs(run.config, "--config")
        settable = set(spec.config_fields()) - {"num_updates"}
        unknown = sorted(set(user_config) - settable - {"num_updates"})
        if unknown or "num_updates" in user_config:
            bad = unknown or ["num_updates (set --env-steps instead)"]
            raise UsageError(f"{run.learner} has no settable config field {', '.join(bad)}; "
                             f"valid: {', '.join(sorted(settable))}")
        if "hidden" in user_config:
            user_config["hidden"] = _hidden_sizes(user_config["hidden"])
        user_hp = parse_pairs(run.hp, "--hp")
        if ("hysteretic" in settable and "hysteretic" not in user_config
                and user_hp.get("hysteretic_beta", 1) != 1):
            user_config["hysteretic"] = True  # a beta below 1 needs the two-rate optimiser
        probe = registry.make_config(run.learner, **user_config, num_updates=1)
        num_updates = -(-run.env_steps // probe.env_steps_per_update)
        chunks = min(run.chunks, num_updates)
        num_updates = -(-num_updates // chunks) * chunks
        if num_updates > MAX_UPDATES:
            raise UsageError(f"--env-steps {run.env_steps} needs {num_updates:,} updates of "
                             f"{probe.env_steps_per_update} env steps; at most {MAX_UPDATES:,} "
                             "fit the update counter")
        config = registry.make_config(run.learner, **user_config, num_updates=num_updates)
        unknown = sorted(set(user_hp) - set(spec.hp_fields()))
        if unknown:
            raise UsageError(f"{run.learner} has no hyperparameter {', '.join(unknown)}; "
                             f"valid: {', '.join(sorted(spec.hp_fields()))}")
        hp = registry.make_hyperparams(run.learner, config, **user_hp)
        _check_given("--hp", user_hp, hp, registry.make_hyperparams(run.learner, config))
        learner, _ = registry.make_learner(config, env, env_params)
    except UsageError:
        raise
    except (ValueError, TypeError, ArithmeticError, MemoryError) as err:
        raise UsageError(str(err).splitlines()[0] if str(err) else type(err).__name__
                         ) from err
    return Built(spec, env, env_params, config, hp, learner, chunks)


#: the most updates a run may have (the learners count them in int32)
MAX_UPDATES = 2**31 - 1


def _hidden_sizes(value: Any) -> tuple[int, ...]:
    """``--config hidden=64,64`` (or one size, 64) as ``(64, 64)``; ``UsageError`` naming
    the option otherwise."""
    parts = str(value).split(",")
    sizes = []
    for part in parts:
        try:
            sizes.append(int(part.strip()))
        except ValueError:
            sizes = []
            break
    if not sizes or any(size < 1 for size in sizes):
        raise UsageError(f"--config hidden must be layer sizes, positive integers separated by "
                         f"commas (e.g. hidden=64,64), got {str(value)!r}")
    return tuple(sizes)


def _check_given(option: str, given: dict[str, Any], built: Any, defaults: Any) -> None:
    """The values a user gave (``option`` NAME=VALUE) for fields of the params or
    hyperparameters ``built``: numbers JAX can hold in the field's dtype (``defaults`` has
    it), not text, NaN, a fraction for an integer, or an integer that overflows.

    The envs and learners check their own fields too; this is the command line's promise,
    kept whatever a dataclass accepts: one line naming the option, before anything runs."""
    fields = {f.name for f in dataclasses.fields(built)}
    for name, value in given.items():
        if name not in fields or dataclasses.is_dataclass(getattr(defaults, name)):
            continue
        kind = np.asarray(getattr(defaults, name)).dtype.kind
        label = f"{option} {name}={value}"
        if isinstance(value, bool) != (kind == "b") or isinstance(value, str):
            expected = "true or false" if kind == "b" else "a number"
            raise UsageError(f"{label}: {name} takes {expected}")
        if isinstance(value, float) and np.isnan(value):
            raise UsageError(f"{label}: NaN is not a value {name} can take")
        if kind == "b":
            continue
        try:
            number = float(value)
        except OverflowError:
            raise UsageError(f"{label}: too large for {name}") from None
        # the dtype JAX will hold it in (int32/float32 unless jax_enable_x64)
        dtype = np.dtype(jax.dtypes.canonicalize_dtype(np.asarray(getattr(defaults, name)).dtype))
        if kind in "iu":
            if not (isinstance(value, int) or number.is_integer()):
                raise UsageError(f"{label}: {name} is an integer")
            info = np.iinfo(dtype)
            if not info.min <= value <= info.max:
                raise UsageError(f"{label}: {name} is an integer of {dtype}, from {info.min} "
                                 f"to {info.max}")
        elif np.isfinite(number) and abs(number) > float(np.finfo(dtype).max):
            raise UsageError(f"{label}: larger than {dtype} holds (at most "
                             f"{np.finfo(dtype).max:.4g})")


def keep_best(state: dict[str, Any], params: Any, score: jax.Array) -> dict[str, Any]:
    """Per seed, replace the best parameters by ``params`` where ``score`` beats the best."""
    better = score > state["best_score"]

    def pick(new: jax.Array, old: jax.Array) -> jax.Array:
        return jnp.where(better.reshape((-1,) + (1,) * (new.ndim - 1)), new, old)

    return {**state, "best_params": jax.tree.map(pick, params, state["best_params"]),
            "best_score": jnp.where(better, score, state["best_score"])}


def summary(per_seed: dict[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    """metric -> mean ± 95% CI over seeds of each seed's episode mean."""
    out = {}
    for name, values in per_seed.items():
        seeds = values.mean(axis=1)
        mean, half = mean_ci95(seeds)
        out[name] = {"mean": mean, "ci95": half, "per_seed": seeds}
    return out


class Run:
    """A run being trained: set up once from its config, then chunk by chunk.

    Holds the built learner, the jitted (vmapped over seeds) ``init`` and chunk programs, the
    seed mesh, and the evaluation programs by episode count.
    """

    def __init__(self, run: RunConfig, out: Path | None = None,
                 distributed: bool = False) -> None:
        self.run, self.out = run, out
        built = build(run)
        self.spec, self.env, self.env_params = built.spec, built.env, built.env_params
        self.config, self.hp, self.learner, self.chunks = (built.config, built.hp,
                                                           built.learner, built.chunks)
        self.updates_per_chunk = self.config.num_updates // self.chunks
        self.steps_per_update = self.config.env_steps_per_update
        try:  # seeds split over a device mesh; one device: left where JAX puts them
            if distributed:  # --devices of every process
                self.mesh = parallel.seed_mesh(run.devices, global_devices=True)
            else:
                self.mesh = parallel.seed_mesh(run.devices) if run.devices > 1 else None
        except ValueError as err:
            raise UsageError(f"--devices {run.devices}: {err}") from err
        if self.mesh is not None and run.seeds % self.mesh.size:
            raise UsageError(f"--seeds {run.seeds} must be a multiple of the {self.mesh.size} "
                             f"devices of {jax.process_count()} processes (--devices "
                             f"{run.devices} each)")
        learner = self.learner

        def chunk(state: Any) -> tuple[Any, dict[str, jax.Array]]:
            return jax.lax.scan(lambda c, _: learner.update(c), state, None,
                                length=self.updates_per_chunk)

        # over a mesh every output stays split by seed like the inputs: without this XLA
        # picks some outputs' shardings itself, and the second chunk compiles again
        shard = {} if self.mesh is None else {"out_shardings": parallel.leading_sharding(
            self.mesh)}
        self._init = jax.jit(jax.vmap(learner.init), **shard)
        self._chunk = jax.jit(jax.vmap(chunk), **shard)
        self._evals: dict[int, Any] = {}

    # -- state ---------------------------------------------------------------------------------
    def policy_params(self, learner_state: Any) -> Any:
        return self.spec.module.policy_params(learner_state)

    def policy(self, params: Any, greedy: bool = True) -> Any:
        """The ``Policy`` of one seed's ``params``."""
        return self.spec.module.make_policy(self.config, self.env, params, greedy=greedy)

    def keys(self) -> jax.Array:
        return jax.random.split(jax.random.PRNGKey(self.run.seed), self.run.seeds)

    def initial(self) -> dict[str, Any]:
        keys, hps = self.keys(), stack_hyperparams(self.hp, self.run.seeds)
        if self.mesh is not None:
            keys, hps = parallel.shard_leading((keys, hps), self.mesh)
        learner_state = self._init(keys, hps)
        params = self.policy_params(learner_state)
        return {"learner": learner_state, "best_params": jax.tree.map(jnp.copy, params),
                "best_score": jnp.full((self.run.seeds,), -jnp.inf)}

    def abstract(self) -> Any:
        keys, hps = self.keys(), stack_hyperparams(self.hp, self.run.seeds)
        learner_state = jax.eval_shape(jax.vmap(self.learner.init), keys, hps)
        params = self.policy_params(learner_state)
        return {"learner": learner_state, "best_params": params,
                "best_score": jax.ShapeDtypeStruct((self.run.seeds,), jnp.float32)}

    def place(self, state: Any) -> Any:
        return state if self.mesh is None else parallel.shard_leading(state, self.mesh)

    # -- evaluation ------------------------------------------------------------------------------
    def evaluate(self, params: Any, episodes: int, key: jax.Array) -> dict[str, np.ndarray]:
        """Greedy episodes of every seed's ``params``: metric -> (seeds, episodes)."""
        if episodes not in self._evals:
            env, env_params = self.env, self.env_params
            self._evals[episodes] = jax.jit(jax.vmap(lambda p, k: evaluate(
                env, env_params, self.policy(p), k, episodes)))
        figures = parallel.gather(self._evals[episodes](
            params, jax.random.split(key, self.run.seeds)))
        return {k: np.asarray(v, np.float64).reshape(self.run.seeds, episodes, -1).mean(axis=2)
                for k, v in figures.items() if k != "agent_returns"}

    def eval_key(self, chunk: int) -> jax.Array:
        return jax.random.fold_in(jax.random.PRNGKey(self.run.seed + 1), chunk)

    def references(self, episodes: int) -> dict[str, dict[str, np.ndarray]]:
        """The random policy and the env's registered references, ``episodes`` per seed."""
        out = {}
        factories = {"random": lambda env, _: random_policy(env),
                     **reference_policies(self.env)}
        for name, factory in factories.items():
            policy = factory(self.env, self.env_params)
            fn = jax.jit(jax.vmap(lambda k, policy=policy: evaluate(
                self.env, self.env_params, policy, k, episodes)))
            figures = parallel.gather(fn(jax.random.split(
                jax.random.PRNGKey(self.run.seed + 2), self.run.seeds)))
            out[name] = {k: np.asarray(v, np.float64).reshape(self.run.seeds, episodes, -1)
                         .mean(axis=2) for k, v in figures.items() if k != "agent_returns"}
        return out

    # -- records ---------------------------------------------------------------------------------
    def config_record(self) -> dict[str, Any]:
        """config.json's content (less the format version)."""
        return {
            "run": dataclasses.asdict(self.run), "out": str(self.out),
            "learner_config": dataclasses.asdict(self.config), "hyperparams": self.hp,
            "env_params": self.env_params, "num_updates": self.config.num_updates,
            "env_steps_per_update": self.steps_per_update, "chunks": self.chunks,
            "env_steps_per_seed": self.config.total_env_steps, "jax": jax.__version__,
            "backend": jax.default_backend(), "processes": jax.process_count(),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds"),
            "argv": sys.argv[1:]}


def load_run_config(run_dir: str | Path) -> RunConfig:
    """The :class:`RunConfig` saved in ``run_dir/config.json`` (``UsageError`` naming the
    file if it is absent, not JSON, not an object, lacks ``run``, or has an unknown field or
    a bad value there)."""
    return _read_folder(Path(run_dir))[1]


def _read_folder(out: Path) -> tuple[dict[str, Any], RunConfig, RunConfig | None]:
    """config.json of ``out``, its run settings, and those before its latest extension."""
    try:
        saved = folder.read_config(out)
    except ValueError as err:
        raise UsageError(str(err)) from None
    where = str(out / folder.CONFIG)
    return (saved, resume_rules.run_config_from_record(saved["run"], where, str(out)),
            resume_rules.extension_base(saved, where, str(out)))


def _run_from(config: RunConfig, out: Path, distributed: bool, where: Path | None = None
              ) -> Run:
    """``Run(config)``; a bad setting read from a file is named with that file."""
    try:
        return Run(config, out, distributed)
    except UsageError as err:
        if where is None:
            raise
        raise UsageError(f"{where}: {str(err).splitlines()[0]}") from err


@dataclasses.dataclass(frozen=True)
class Opened:
    """A run folder opened to continue or evaluate (:func:`open_run`)."""

    run: Run                      # built from config.json
    saved: dict[str, Any]         # config.json as read
    base: RunConfig | None        # the settings before config.json's latest extension
    restored: checkpoints.Restored | None  # the newest intact checkpoint (None: none yet)
    checkpoint_run: RunConfig | None  # that checkpoint's own settings


def _check_progress(step: int, meta: dict[str, Any], directory: Path, r: Run) -> None:
    """A checkpoint record whose progress fields do not fit the run: damaged."""
    done, updates = meta.get("chunks_done"), meta.get("updates_done")
    periodic = meta.get("periodic")
    ok = (isinstance(done, int) and not isinstance(done, bool) and 0 < done <= r.chunks
          and updates == done * r.updates_per_chunk and isinstance(periodic, list)
          and all(isinstance(e, dict) and isinstance(e.get("episodes"), dict)
                  and isinstance(e.get("env_steps"), int) for e in periodic))
    if not ok:
        raise checkpoints.CorruptCheckpoint(directory, step, "its record's progress "
                                            "(chunks_done, updates_done, periodic) is malformed")


def open_run(out: Path, distributed: bool = False, need_checkpoint: bool = True) -> Opened:
    """Read the run folder ``out``: config.json, the run it describes, and its newest intact
    checkpoint, whose own settings must agree with config.json (``UsageError``, one line
    naming the first field that differs). Unreadable newer checkpoints are skipped
    (``restored.skipped``), never touched here. ``need_checkpoint=False``: a folder without
    any checkpoint yet gives ``restored=None``."""
    saved, folder_run, base = _read_folder(out)
    where = out / folder.CONFIG
    r = _run_from(folder_run, out, distributed, where)
    directory = out / folder.CHECKPOINTS
    if not checkpoints.all_steps(directory):
        if need_checkpoint:
            raise UsageError(f"no checkpoint in {directory}: the run has not finished a "
                             "checkpointed chunk yet")
        resume_rules.check_record(saved, _json_ready(r.config_record()), str(where))
        return Opened(r, saved, base, None, None)
    matched: dict[int, RunConfig] = {}

    def agree(step: int, meta: dict[str, Any]) -> None:
        try:
            own = resume_rules.run_config_from_record(meta.get("run"), f"checkpoint {step}",
                                                      str(out))
        except UsageError as err:
            raise checkpoints.CorruptCheckpoint(directory, step, str(err)) from err
        if own == folder_run or (base is not None and own == base):
            _check_progress(step, meta, directory, r)
            matched[step] = own
            return
        raise UsageError(resume_rules.disagreement(folder_run, own, step, str(where), str(out)))

    try:
        restored = checkpoints.restore_newest_intact(directory, r.abstract(), agree)
    except checkpoints.CheckpointError as err:
        raise UsageError(str(err)) from None
    resume_rules.check_record(saved, _json_ready(r.config_record()), str(where))
    restored = dataclasses.replace(restored, state=r.place(restored.state))
    return Opened(r, saved, base, restored, matched[restored.step])


def _warn(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _skipped_line(restored: checkpoints.Restored) -> str:
    steps = ", ".join(str(e.step) for e in restored.skipped)
    plural = "s" if len(restored.skipped) > 1 else ""
    return f"checkpoint{plural} {steps} unreadable ({restored.skipped[0].reason[:160]})"


def _default_out(run: RunConfig) -> Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{run.learner}-{run.env}-{stamp}"


def _chunk_return(returns: np.ndarray) -> float:
    """Mean over seeds of the episodes that finished in the chunk (NaN if none did)."""
    finite = np.asarray(returns, np.float64)
    finite = finite[np.isfinite(finite)]
    return float(finite.mean()) if finite.size else float("nan")


def _json_ready(d: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(_jsonable(d)))


def run(config: RunConfig, out: str | Path | None = None, resume: bool = False,
        stop_after_chunks: int | None = None, progress: bool | None = None,
        distributed: bool = False) -> RunResult:
    """Train ``config`` into the run folder ``out`` (default ``config.out``, else
    ``runs/LEARNER-ENV-TIMESTAMP``); see the module docstring.

    ``resume``: continue the run in ``out`` from its newest intact checkpoint. ``config``
    must be the folder's own (:func:`load_run_config`), except that a larger ``env_steps``
    extends the run (:mod:`~jaxmarl_coop.runs.resume`; the rules are in docs/bad-input.md).
    ``stop_after_chunks``: stop after that many chunks (a checkpoint to resume from).
    ``progress``: the progress bar (None: when a terminal shows it). ``distributed``: every
    process (joined by ``jax.distributed.initialize``) calls ``run`` alike; only process 0
    writes ``out``.
    """
    if stop_after_chunks is not None and (isinstance(stop_after_chunks, bool) or not isinstance(
            stop_after_chunks, int) or stop_after_chunks < 1):
        raise UsageError(f"--stop-after-chunks must be an integer >= 1, got "
                         f"{stop_after_chunks!r}")
    main_process = parallel.is_main_process()
    # process 0 decides (its clock names the folder, its disk holds it); the others follow
    out = Path(parallel.broadcast_text(str(out or config.out or _default_out(config))))
    if resume:
        r, state, start_chunk, periodic, names, rows = _resume(config, out, distributed)
    else:
        r, state = _start(config, out, distributed)
        start_chunk, periodic, names, rows = 0, [], None, []
    config = r.run  # what is trained (an extended run's settings)
    loggers = _loggers(r, out) if main_process else None

    total = r.config.num_updates
    bar = tqdm(total=total, initial=start_chunk * r.updates_per_chunk, unit="upd",
               desc=f"{config.learner} {config.env} x{config.seeds}",
               disable=progress is False or not main_process, file=sys.stdout,
               dynamic_ncols=True)
    t0, steps_at_t0 = time.perf_counter(), start_chunk * r.updates_per_chunk
    # this invocation's time, by part: the chunk program compiled apart (ahead of time),
    # training (chunks, synchronised by fetching their metrics), evaluation, checkpoints
    timing = {"compile_s": 0.0, "train_s": 0.0, "eval_s": 0.0, "checkpoint_s": 0.0,
              "chunks": r.chunks - start_chunk,
              "env_steps": (r.chunks - start_chunk) * r.updates_per_chunk * r.steps_per_update
              * config.seeds}
    if start_chunk < r.chunks:  # compiled into jit's cache, which the first call then hits
        r._chunk.lower(state["learner"]).compile()
        timing["compile_s"] = time.perf_counter() - t0
    try:
        for c in range(start_chunk, r.chunks):
            tick = time.perf_counter()
            learner_state, metrics = r._chunk(state["learner"])
            state = {**state, "learner": learner_state}
            metrics = parallel.gather(metrics)
            timing["train_s"] += time.perf_counter() - tick
            names = names or sorted(set(metrics) - {"seed", "update", "env_steps"})
            first = c * r.updates_per_chunk + 1
            rows += folder.metric_rows({n: metrics[n] for n in names}, first,
                                       r.steps_per_update)
            done = c + 1
            tick = time.perf_counter()
            evaluated = None
            if config.eval_every and (done % config.eval_every == 0 or done == r.chunks):
                params = r.policy_params(learner_state)
                episodes = r.evaluate(params, config.periodic_eval_episodes, r.eval_key(done))
                evaluated = {"env_steps": done * r.updates_per_chunk * r.steps_per_update,
                             "episodes": episodes}
                periodic.append(evaluated)
                score = jnp.asarray(episodes["return"].mean(axis=1), jnp.float32)
                state = keep_best(state, params, score)
            timing["eval_s"] += time.perf_counter() - tick
            if main_process:
                folder.write_metrics(out, names, rows)
                _log_chunk(loggers, r, first, {n: metrics[n] for n in names}, evaluated)
            tick = time.perf_counter()
            if config.checkpoint_every and (done % config.checkpoint_every == 0
                                            or done == r.chunks):
                # distributed: every process joins orbax's save (its barriers are
                # collective); host arrays, which orbax writes from process 0 only
                saved = parallel.gather(state) if distributed else state
                checkpoints.save(out / folder.CHECKPOINTS, done, saved, _json_ready({
                    "chunks_done": done, "updates_done": done * r.updates_per_chunk,
                    "run": dataclasses.asdict(config), "periodic": periodic}))
            timing["checkpoint_s"] += time.perf_counter() - tick
            bar.update(r.updates_per_chunk)
            elapsed = time.perf_counter() - t0
            rate = (done * r.updates_per_chunk - steps_at_t0) * r.steps_per_update * config.seeds
            bar.set_postfix(env_steps=f"{done * r.updates_per_chunk * r.steps_per_update:,}",
                            steps_per_s=f"{rate / max(elapsed, 1e-9):,.0f}",
                            mean_return=f"{_chunk_return(metrics['episode_return']):.2f}",
                            refresh=False)
            if stop_after_chunks is not None and done >= stop_after_chunks and done < r.chunks:
                bar.close()
                return RunResult(out, None, stopped_after_chunk=done)
        bar.close()
        timing["env_steps_per_s"] = timing["env_steps"] / max(timing["train_s"], 1e-9)
        return RunResult(out, finish(r, state, periodic, out, timing, t0))
    finally:
        if loggers is not None:
            loggers.close()


def _start(config: RunConfig, out: Path, distributed: bool) -> tuple[Run, Any]:
    """A new run in ``out``: checked, built, initialised, config.json written."""
    problem = ""
    if parallel.is_main_process():
        try:
            folder.check_out_folder(out)
        except ValueError as err:
            problem = str(err)
        if not problem and (out / folder.CONFIG).exists():
            problem = (f"{out} already holds a run; continue it with --resume {out} or choose "
                       "another --out")
    problem = parallel.broadcast_text(problem)
    if problem:
        raise UsageError(problem)
    r = Run(config, out, distributed)
    state = r.initial()
    if parallel.is_main_process():
        folder.write_config(out, r.config_record())
    return r, state


def _resume(config: RunConfig, out: Path, distributed: bool
            ) -> tuple[Run, Any, int, list[dict[str, Any]], list[str] | None, list[list[Any]]]:
    """The run in ``out`` ready to continue: ``(run, state, chunks done, periodic
    evaluations, metric names, metrics rows so far)``. Every check comes first; only then
    does it write (an extension's config.json, unreadable checkpoints moved aside)."""
    main_process = parallel.is_main_process()
    _, folder_run, _ = _read_folder(out)
    where = out / folder.CONFIG
    differs = resume_rules.first_difference(config, folder_run, ignore=("out", "env_steps"))
    if differs is not None:
        raise UsageError(f"{differs} is {getattr(config, differs)!r} here but "
                         f"{getattr(folder_run, differs)!r} in {where}: a resumed run keeps "
                         "its own settings (only env_steps may grow, to extend it)")
    opened = open_run(out, distributed, need_checkpoint=False)
    r, restored = opened.run, opened.restored
    if restored is None:  # killed before its first checkpoint: nothing to continue from
        if (out / folder.EVAL).exists():
            raise UsageError(f"{out} has finished and kept no checkpoint (--checkpoint-every "
                             "0): there is nothing to resume")
        if config.env_steps != folder_run.env_steps:
            r = _run_from(dataclasses.replace(folder_run, env_steps=config.env_steps), out,
                          distributed)
        if main_process:
            _warn(f"note: {out} has no checkpoint yet; training it from the start")
        state = r.initial()
        if main_process:
            folder.write_config(out, r.config_record())
        return r, state, 0, [], None, []

    meta = restored.meta
    start_chunk, updates_done = int(meta["chunks_done"]), int(meta["updates_done"])
    names, rows = _rows_until(out, updates_done, r.run.seeds)
    extensions = list(opened.saved.get("extensions", []))
    rewrite = False
    if config.env_steps != folder_run.env_steps:
        extended = resume_rules.extend(folder_run, r.config.num_updates, r.updates_per_chunk,
                                 r.steps_per_update, config.env_steps)
        if extended is not None:
            longer = _run_from(extended, out, distributed)
            assert longer.updates_per_chunk == r.updates_per_chunk, "extension changed chunks"
            extensions.append(resume_rules.extension_entry(
                folder_run, extended, updates_done, r.config.num_updates,
                longer.config.num_updates, sys.argv[1:]))
            if main_process:
                _warn(f"note: extending {out} from {r.config.total_env_steps:,} to "
                      f"{longer.config.total_env_steps:,} env steps per seed "
                      f"({r.config.num_updates} -> {longer.config.num_updates} updates, "
                      f"{r.chunks} -> {longer.chunks} "
                      f"chunks) from update {updates_done}; schedules over the updates (lr "
                      "annealing, epsilon decay) follow the new length: docs/bad-input.md")
            r, rewrite = longer, True
    elif opened.base is not None and opened.checkpoint_run == opened.base \
            and extensions[-1].get("at_update") != updates_done:
        # the extension continues from an older checkpoint than it was asked at
        extensions[-1] = {**extensions[-1], "at_update": updates_done}
        rewrite = True

    # every check passed: now the writes
    if main_process and restored.skipped:
        moved = [checkpoints.set_aside(out / folder.CHECKPOINTS, e.step,
                                       out / folder.CORRUPT_CHECKPOINTS)
                 for e in restored.skipped]
        _warn(f"warning: {_skipped_line(restored)}; moved to {moved[0].parent} (not deleted); "
              f"resuming {out} from checkpoint {restored.step} (update {updates_done} of "
              f"{r.config.num_updates})")
    if main_process and rewrite:
        folder.write_config(out, {**r.config_record(), "created": opened.saved.get("created"),
                                  "argv": opened.saved.get("argv"), "extensions": extensions})
    parallel.broadcast_text("")  # the others wait until process 0 has moved and written
    periodic = [{"env_steps": e["env_steps"],
                 "episodes": {k: np.asarray(v, np.float64) for k, v in e["episodes"].items()}}
                for e in meta["periodic"]]
    return r, r.place(restored.state), start_chunk, periodic, names, rows


def _rows_until(out: Path, last_update: int, seeds: int
                ) -> tuple[list[str] | None, list[list[Any]]]:
    """metrics.csv's rows up to ``last_update`` (the checkpoint's), which must all be there."""
    if last_update == 0:
        return None, []
    try:
        names, rows = folder.read_metric_rows(out, last_update)
    except (OSError, ValueError) as err:
        raise UsageError(f"{out / folder.METRICS}: {str(err).splitlines()[0]}; the run cannot "
                         "continue without its metrics up to its checkpoint") from None
    have = {(row[0], row[1]) for row in rows}
    want = {(s, u) for s in range(seeds) for u in range(1, last_update + 1)}
    if have != want:
        raise UsageError(f"{out / folder.METRICS} lacks rows up to update {last_update} (the "
                         f"checkpoint's) for {seeds} seeds: {len(want - have)} missing, "
                         f"{len(have - want)} unexpected; the run cannot continue consistently")
    return names, rows


def _loggers(r: Run, out: Path) -> Any:
    if r.run.logger == "csv":  # metrics.csv is always written; nothing more to open
        return None
    from jaxmarl_coop.loggers import make_loggers, parse_logger_names

    return make_loggers(parse_logger_names(r.run.logger), out, out.name,
                        _json_ready(r.config_record()))


def _log_chunk(loggers: Any, r: Run, first_update: int, metrics: dict[str, np.ndarray],
               evaluated: dict[str, Any] | None) -> None:
    """The chunk's metrics (and evaluation) to the extra loggers."""
    if loggers is None:
        return
    arrays = {n: np.asarray(v, np.float64) for n, v in metrics.items()}
    arrays = {n: a.reshape(a.shape[0], a.shape[1], -1).mean(axis=2) for n, a in arrays.items()}
    updates = next(iter(arrays.values())).shape[1]
    env_steps = (first_update + np.arange(updates)) * r.steps_per_update
    loggers.log_updates(env_steps, arrays)
    if evaluated is not None:
        loggers.log_eval(evaluated["env_steps"],
                         {f"{k}_mean": float(np.mean(v)) for k, v in
                          evaluated["episodes"].items()})


def finish(r: Run, state: Any, periodic: list[dict[str, Any]], out: Path,
           timing: dict[str, Any] | None = None, t0: float | None = None) -> dict[str, Any]:
    """Final and absolute evaluations, references, eval.json, marl_eval.json, plot, GIF, and
    timing.json: per invocation of ``run`` (a resumed run adds one), its seconds by part
    (compile apart) and its training env steps/s over all seeds. Timing is kept out of
    eval.json, which depends on the key alone.

    Every process evaluates (collectives); only process 0 writes and prints."""
    run = r.run
    tick = time.perf_counter()
    final_params = r.policy_params(state["learner"])
    final = r.evaluate(final_params, run.eval_episodes, r.eval_key(FINAL_EVAL))
    best_score = np.asarray(parallel.gather(state["best_score"]))
    have_best = bool(np.all(np.isfinite(best_score)))
    absolute = r.evaluate(state["best_params"], run.eval_episodes, r.eval_key(FINAL_EVAL + 1)) \
        if have_best else final
    references = r.references(min(run.eval_episodes, 256))
    result = {
        "episodes_per_seed": run.eval_episodes, "final": summary(final),
        "absolute": summary(absolute),
        "absolute_from": "best periodic evaluation" if have_best else "final parameters",
        "best_periodic_return_per_seed": best_score,
        "references": {k: summary(v) for k, v in references.items()},
        "periodic": [{"env_steps": e["env_steps"],
                      "return": summary({"return": e["episodes"]["return"]})["return"]}
                     for e in periodic]}
    if timing is not None:
        timing = {**timing, "final_eval_s": time.perf_counter() - tick,
                  "backend": jax.default_backend(),
                  "device_kind": jax.devices()[0].device_kind}
        if t0 is not None:  # compile, training, evaluations and checkpoints
            timing["wall_s"] = time.perf_counter() - t0
    if run.gif and jax.process_count() > 1:  # host copies: process 0 renders alone
        final_params = parallel.gather(final_params)
    if not parallel.is_main_process():
        return result
    write_json_atomic(out / folder.EVAL, result)
    if timing is not None:
        folder.append_timing(out, timing)
    write_json_atomic(out / folder.MARL_EVAL, folder.marl_eval_json(
        run.env, run.learner, run.seeds, periodic, absolute))
    _plot(out, result)
    if run.gif:
        _gif(r, final_params, out)
    ret = result["final"]["return"]
    print(f"greedy team return over {run.seeds} seeds: {ret['mean']:.2f} ± {ret['ci95']:.2f} "
          f"(95% CI; best parameters {result['absolute']['return']['mean']:.2f}); "
          f"run folder: {out}")
    if timing is not None:
        eval_s = timing["eval_s"] + timing["final_eval_s"]
        print(f"trained {timing['env_steps']:,} env steps in {timing['train_s']:.1f} s "
              f"({timing['env_steps_per_s']:,.0f} env steps/s over {run.seeds} seeds); compile "
              f"{timing['compile_s']:.1f} s, evaluation {eval_s:.1f} s, checkpoints "
              f"{timing['checkpoint_s']:.1f} s")
    return result


def _plot(out: Path, result: dict[str, Any]) -> None:
    from jaxmarl_coop import plots

    refs = {name: ev["return"]["mean"] for name, ev in result["references"].items()}
    plots.plot_curves([out], metric="episode_return", references=refs,
                      path=out / folder.CURVE)


def _gif(r: Run, params: Any, out: Path) -> None:
    from jaxmarl_coop.envs import render

    seed0 = jax.tree.map(lambda x: x[0], params)
    try:
        render.animate(r.env, r.env_params, r.policy(seed0),
                       jax.random.PRNGKey(r.run.seed + 3), out / folder.GIF)
    except NotImplementedError as err:  # an env without a picture: say so, keep the run
        print(f"no rollout.gif: {err}", file=sys.stderr)
