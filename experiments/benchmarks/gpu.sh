#!/usr/bin/env bash
# One prepared benchmark run on a single-GPU machine (H100/H200 class), from the repository root:
#
#   bash experiments/benchmarks/gpu.sh                      # the whole run, < 7.5 minutes
#   GPU_SH_LAC=1 GPU_SH_BUDGET_S=690 bash experiments/benchmarks/gpu.sh   # + lac_peer (~4 min)
#   GPU_SH_DRY_RUN=1 bash experiments/benchmarks/gpu.sh     # print the commands, run nothing
#   GPU_SH_QUICK=1 bash experiments/benchmarks/gpu.sh       # tiny sizes: a smoke test (CPU too)
#
# The machine is assumed to have Python 3.12 with jax 0.11 (CUDA), flax, optax and chex, no
# package index, and not necessarily distrax, flashbax, orbax-checkpoint, tqdm or this package:
# whatever of those does not import is installed from the wheels folder beside this script
# (built by gpu_wheels.sh on a machine with internet) with
#   pip install --no-index --find-links WHEELS --no-deps --target SITE ...
# and SITE is put on PYTHONPATH after the repository root (so the repository's code is what
# runs; nothing in the interpreter's own site-packages changes).
#
# Steps, in order, each under its own `timeout` and the whole under a time budget
# (GPU_SH_BUDGET_S, default 450 s: a step gets min(its timeout, what is left); one that would
# get less than its minimum is skipped). A failing step is recorded and the next one runs.
# The timeouts come from the first run on an H100 (2026-11-26, README "On a GPU"), where
# env_throughput, scaling and lac_peer overran the ones they had then.
#   info            nvidia-smi -L, driver, Python/JAX versions and devices, package versions
#   install         the missing core wheels (and this package's wheel) into SITE
#   install_peers   (peers on) JaxMARL's wheel and WHEELS/peers/*.whl into PEER_SITE
#   verify          imports everything, draws a distrax sample on the GPU, says the backend
#   env_throughput  experiments.benchmarks.env_throughput, spread and tag at batch 1024 and
#                   65536 (peers: + JaxMARL in the same process, + mpe2 when installed; else
#                   --skip-peers); its JSON is rewritten after every row
#   train_mappo train_ippo train_dqn train_tabular_q train_vdn train_qmix
#                   one full experiments.train run per learner (eval, checkpoints, curve;
#                   --no-gif), 22-37 s each on an H100, compile included
#   scaling         experiments.benchmarks.scaling, GPU sizes (envs 16..65536, agents 2..32 at
#                   batch 1024, seeds 1..64; in that order, the JSON saved after each axis)
#   train_mappo_rnn train_mappo_smax
#                   recurrent MAPPO on cue-v1 (--config recurrent=true), and (peers) MAPPO
#                   on SMAX 3m through the JaxMARL adapter; not yet measured on a GPU
#   lac_peer        (GPU_SH_LAC=1, peers on and JAXMARL_REPO set) learn_actor_critic --only
#                   throughput: our IPPO/MAPPO against JaxMARL's baseline scripts (~210 s on
#                   an H100: raise GPU_SH_BUDGET_S by that much)
#
# Output: OUT_DIR = $OUT if set (the device tool's folder), else runs/bench/gpu. It receives at
# most 7 files (the device tool brings back 8): gpu_sh.log, summary.json (every step's
# status, exit code, timeout and wall time, train runs' env steps/s including compile, the
# headline numbers), env_throughput.json, scaling.json, scaling.png, learn_actor_critic.json
# (peers), and detail.tar.gz (the work folder: step logs, train run folders without
# checkpoints/, scaling's folder). The work folder is WORK_DIR (GPU_SH_WORK; default
# OUT_DIR/work, or /tmp/gpu_sh_work when $OUT is set); train/<learner> in it is replaced on
# each run. Exit status: 0 if every step that ran succeeded, else 1.
#
# Environment:
#   PYTHON            interpreter with jax[cuda] (default python3)
#   WHEELS            wheels folder (default: experiments/benchmarks/wheels)
#   GPU_SH_SITE, GPU_SH_PEER_SITE   install targets (default /tmp/gpu_sh_site{,_peers})
#   JAXMARL_WHEEL     jaxmarl-0.2.0-py3-none-any.whl (default WHEELS/peers/jaxmarl-*.whl)
#   JAXMARL_REPO      a JaxMARL checkout, or just its baselines/IPPO and baselines/MAPPO
#                     files (default WHEELS/peers/jaxmarl-baselines when present)
#   GPU_SH_PEERS      auto (default: on when a JaxMARL wheel is found), 1 or 0
#   GPU_SH_LAC        1: add the lac_peer step (default 0)
#   GPU_SH_STEPS      run only these steps (space-separated names, e.g. "info verify scaling")
#   GPU_SH_BUDGET_S   whole-run budget in seconds (default 450)
#   GPU_SH_DRY_RUN=1  print each step's command and timeout, create nothing, run nothing
#   GPU_SH_QUICK=1    tiny sizes and budgets (checks the plumbing; not a measurement)
set -u
set -o pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
cd "$REPO" || exit 1

export PYTHON="${PYTHON:-python3}"
OUT_DIR="${OUT:-runs/bench/gpu}"
if [[ -n "${OUT:-}" ]]; then WORK_DIR="${GPU_SH_WORK:-/tmp/gpu_sh_work}"
else WORK_DIR="${GPU_SH_WORK:-$OUT_DIR/work}"; fi
export WHEELS="${WHEELS:-$HERE/wheels}"
export SITE="${GPU_SH_SITE:-/tmp/gpu_sh_site}"
export PEER_SITE="${GPU_SH_PEER_SITE:-/tmp/gpu_sh_site_peers}"
BUDGET_S="${GPU_SH_BUDGET_S:-450}"
RESERVE_S=15  # kept back for the summary and the bundle
DRY="${GPU_SH_DRY_RUN:-0}"
QUICK="${GPU_SH_QUICK:-0}"
ONLY="${GPU_SH_STEPS:-}"
LAC="${GPU_SH_LAC:-0}"
JAXMARL_WHEEL="${JAXMARL_WHEEL:-$(ls "$WHEELS"/peers/jaxmarl-*.whl 2>/dev/null | head -n 1)}"
if [[ -z "${JAXMARL_REPO:-}" && -d "$WHEELS/peers/jaxmarl-baselines" ]]; then
  JAXMARL_REPO="$WHEELS/peers/jaxmarl-baselines"
fi
JAXMARL_REPO="${JAXMARL_REPO:-}"
PEERS="${GPU_SH_PEERS:-auto}"
if [[ "$PEERS" == auto ]]; then PEERS=0; [[ -n "$JAXMARL_WHEEL" ]] && PEERS=1; fi
export PYTHONUNBUFFERED=1
export PYTHONPATH="$REPO:$SITE${PYTHONPATH:+:$PYTHONPATH}"
PEER_PYTHONPATH="$PYTHONPATH:$PEER_SITE"

# the core wheels: importable module -> distribution (installed only where the import fails)
CORE_MODULES="distrax:distrax tensorflow_probability:tfp-nightly decorator:decorator \
gast:gast tree:dm-tree flashbax:flashbax orbax.checkpoint:orbax-checkpoint tqdm:tqdm"
export CORE_MODULES

T0=$SECONDS
DRY_WORST=0
STEPS_TSV="$WORK_DIR/steps.tsv"
FAILED=0

if [[ "$DRY" != 1 ]]; then
  mkdir -p "$OUT_DIR" "$WORK_DIR/logs" || exit 1
  : > "$STEPS_TSV"
  exec > >(tee "$OUT_DIR/gpu_sh.log") 2>&1
fi

now() { echo "${EPOCHREALTIME:-$SECONDS}"; }

record() {  # name status rc timeout_s wall_s command (one line: tabs and newlines blanked)
  [[ "$DRY" == 1 ]] && return 0
  local cmd="${6//$'\t'/ }"
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" "${cmd//$'\n'/ }" \
    >> "$STEPS_TSV"
}

# step NAME TIMEOUT_S MIN_S [VAR=VALUE ...] -- COMMAND ...
step() {
  local name=$1 nominal=$2 minimum=$3
  shift 3
  local envs=()
  while [[ $# -gt 0 && "$1" != -- ]]; do envs+=("$1"); shift; done
  shift
  local cmd="${envs[*]:+${envs[*]} }$*" shown
  if [[ $# -ge 3 && "$1" == bash && "$2" == -c ]]; then  # a function below, run by bash -c
    cmd="${envs[*]:+${envs[*]} }bash -c <function ${3##*; }>"
    shown="$cmd"$'\n'"$3"
  else
    shown="$cmd"
  fi
  if [[ -n "$ONLY" && " $ONLY " != *" $name "* ]]; then
    record "$name" "not selected" "" "" "" "$cmd"
    return 0
  fi
  local elapsed=$(( SECONDS - T0 ))
  [[ "$DRY" == 1 ]] && elapsed=$DRY_WORST  # dry run: as if every step ran to its timeout
  local left=$(( BUDGET_S - RESERVE_S - elapsed ))
  local limit=$(( nominal < left ? nominal : left ))
  if (( limit < minimum )); then
    echo "=== $name: skipped, ${left} s of the ${BUDGET_S} s budget left (needs ${minimum} s)"
    record "$name" "skipped (budget)" "" "$limit" "" "$cmd"
    return 0
  fi
  echo
  if [[ "$DRY" == 1 ]]; then
    DRY_WORST=$(( DRY_WORST + limit ))
    echo "=== $name (timeout ${limit} s; over by ${DRY_WORST} s at the latest)"
    echo "+ $shown"
    return 0
  fi
  echo "=== $name (timeout ${limit} s; $(( SECONDS - T0 )) s into the run)"
  echo "+ $cmd"
  local start rc status wall
  start=$(now)
  env ${envs[@]+"${envs[@]}"} timeout -k 10 "$limit" "$@" 2>&1 | tee "$WORK_DIR/logs/$name.log"
  rc=${PIPESTATUS[0]}
  wall=$(awk -v a="$start" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')
  case $rc in
    0) status=ok ;;
    124|137) status="timeout"; FAILED=$(( FAILED + 1 )) ;;
    *) status="failed"; FAILED=$(( FAILED + 1 )) ;;
  esac
  echo "=== $name: $status (exit $rc, ${wall} s)"
  record "$name" "$status" "$rc" "$limit" "$wall" "$cmd"
}

info() {
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)  host: $(hostname)  repo: $PWD"
  echo "commit: $(git rev-parse HEAD 2>/dev/null || echo unknown)"
  nvidia-smi -L
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem \
    --format=csv || true
  "$PYTHON" --version
  "$PYTHON" -c 'import jax, jaxlib; print("jax", jax.__version__, "jaxlib", jaxlib.__version__,
"backend", jax.default_backend(), "devices", jax.devices())'
  "$PYTHON" -m pip list 2>/dev/null | grep -iE '^(jax|jaxlib|jax-cuda[0-9]*-(plugin|pjrt)|flax|optax|chex|distrax|tfp-nightly|tensorflow-probability|dm-tree|flashbax|orbax-checkpoint|tqdm|numpy|matplotlib|tensorstore|jaxmarl) ' || true
  echo "wheels in $WHEELS:"; ls "$WHEELS" 2>/dev/null || echo "  (none)"
}

install_core() {
  local missing=() pair module dist
  for pair in $CORE_MODULES; do
    module=${pair%%:*}; dist=${pair#*:}
    if "$PYTHON" -c "import importlib.util as u, sys; sys.exit(u.find_spec('$module') is None)" \
        2>/dev/null; then
      echo "present: $dist ($module)"
    else
      echo "missing: $dist ($module)"; missing+=("$dist")
    fi
  done
  # this package too (the repository root stays first on PYTHONPATH)
  if ls "$WHEELS"/jaxmarl_coop-*.whl > /dev/null 2>&1; then missing+=(jaxmarl_coop); fi
  if [[ ${#missing[@]} -eq 0 ]]; then echo "nothing to install"; return 0; fi
  mkdir -p "$SITE"
  "$PYTHON" -m pip install --no-index --find-links "$WHEELS" --no-deps --no-compile \
    --no-cache-dir --upgrade --disable-pip-version-check --target "$SITE" "${missing[@]}"
}

install_peers() {
  mkdir -p "$PEER_SITE"
  local wheels=("$JAXMARL_WHEEL")
  if ls "$WHEELS"/peers/*.whl > /dev/null 2>&1; then
    for w in "$WHEELS"/peers/*.whl; do [[ "$w" -ef "$JAXMARL_WHEEL" ]] || wheels+=("$w"); done
  fi
  "$PYTHON" -m pip install --no-index --find-links "$WHEELS/peers" --no-deps --no-compile \
    --no-cache-dir --upgrade --disable-pip-version-check --target "$PEER_SITE" "${wheels[@]}"
  PYTHONPATH="$PEER_PYTHONPATH" "$PYTHON" -c 'import contextlib, io
with contextlib.redirect_stdout(io.StringIO()):
    import jaxmarl
print("jaxmarl imports from", jaxmarl.__file__)'
}

verify() {
  "$PYTHON" - <<'EOF'
import os
import jax, jax.numpy as jnp
import distrax, flashbax, orbax.checkpoint, tqdm  # noqa: F401
import jaxmarl_coop
from jaxmarl_coop.learners import actor_critic, dqn, tabular_q  # noqa: F401
print("jaxmarl_coop from", jaxmarl_coop.__file__)
print("backend", jax.default_backend(), "devices", jax.devices())
sample = distrax.Categorical(logits=jnp.zeros((4, 3))).sample(seed=jax.random.PRNGKey(0))
print("distrax sample on", sample.devices(), sample)
if jax.default_backend() != "gpu":
    if os.environ.get("GPU_SH_QUICK") != "1":
        raise SystemExit("not on a GPU: the timings below would be CPU timings")
    print("not on a GPU: fine for a quick run (the plumbing), not for timings")
EOF
}

if [[ "$QUICK" == 1 ]]; then
  ET_ARGS=(--quick --batch-sizes 1 4 --envs spread-v3 --repeats 2)
  SC_ARGS=(--quick --envs spread-v3)
  TRAIN_COMMON=(--seeds 2 --chunks 2 --eval-every 1 --periodic-eval-episodes 4
                --eval-episodes 8 --checkpoint-every 1 --no-gif)
  STEPS_MAPPO=2048 STEPS_IPPO=2048 STEPS_DQN=512 STEPS_TABULAR=800 STEPS_VD=512
  TRAIN_TIMEOUT=120  # compile-bound on a CPU
  LAC_ARGS=(--quick)
else
  ET_ARGS=(--envs spread-v3 tag-v3 --batch-sizes 1024 65536 --repeats 3 --target-seconds 0.2
           --mpe2-steps 2000)
  SC_ARGS=(--axes envs agents seeds --env-sizes 16 256 1024 4096 65536 --seed-counts 1 8 64
           --agent-counts 2 8 32 --agents-batch 1024 --repeats 3 --target-seconds 0.1
           --train-updates 4)
  TRAIN_COMMON=(--seeds 4 --chunks 4 --eval-every 2 --periodic-eval-episodes 16
                --eval-episodes 64 --checkpoint-every 2 --no-gif)
  STEPS_MAPPO=300000 STEPS_IPPO=300000 STEPS_DQN=200000 STEPS_TABULAR=300000
  STEPS_VD=200000
  TRAIN_TIMEOUT=55
  LAC_ARGS=()
fi
[[ "$PEERS" == 1 ]] || ET_ARGS+=(--skip-peers)

echo "gpu.sh: budget ${BUDGET_S} s, out ${OUT_DIR}, work ${WORK_DIR}, wheels ${WHEELS}," \
  "peers ${PEERS}${JAXMARL_WHEEL:+ (${JAXMARL_WHEEL})}, lac_peer ${LAC}, quick ${QUICK}," \
  "dry run ${DRY}"

# the bash functions above run as `bash -c` commands, so that `timeout` can bound them
step info 30 5 -- bash -c "$(declare -f info); info"
step install 60 10 -- bash -c "$(declare -f install_core); install_core"
if [[ "$PEERS" == 1 ]]; then
  step install_peers 60 10 JAXMARL_WHEEL="$JAXMARL_WHEEL" PEER_PYTHONPATH="$PEER_PYTHONPATH" \
    -- bash -c "$(declare -f install_peers); install_peers"
fi
step verify 60 10 GPU_SH_QUICK="$QUICK" -- bash -c "$(declare -f verify); verify"

PY_ENV=()
[[ "$PEERS" == 1 ]] && PY_ENV=(PYTHONPATH="$PEER_PYTHONPATH")
step env_throughput 110 20 ${PY_ENV[@]+"${PY_ENV[@]}"} -- "$PYTHON" -m \
  experiments.benchmarks.env_throughput "${ET_ARGS[@]}" --out "$OUT_DIR/env_throughput.json"

train() {  # train NAME STEPS TRAIN-ARGS...
  local name=$1 steps=$2
  shift 2
  [[ "$DRY" == 1 ]] || rm -rf "$WORK_DIR/train/$name"
  step "train_$name" "$TRAIN_TIMEOUT" 20 -- "$PYTHON" -m experiments.train "$@" --env-steps "$steps" \
    "${TRAIN_COMMON[@]}" --out "$WORK_DIR/train/$name"
}
train mappo "$STEPS_MAPPO" --learner mappo --env tracking-v1
train ippo "$STEPS_IPPO" --learner ippo --env spread-v3
train dqn "$STEPS_DQN" --learner dqn --env spread-v3
train tabular_q "$STEPS_TABULAR" --learner tabular_q --env grid-tracking-v1
train vdn "$STEPS_VD" --learner vdn --env spread-v3
train qmix "$STEPS_VD" --learner qmix --env spread-v3

step scaling 170 30 -- "$PYTHON" -m experiments.benchmarks.scaling "${SC_ARGS[@]}" \
  --out "$WORK_DIR/scaling"
if [[ "$DRY" != 1 ]]; then
  cp "$WORK_DIR/scaling/results.json" "$OUT_DIR/scaling.json" 2>/dev/null
  cp "$WORK_DIR/scaling/scaling.png" "$OUT_DIR/scaling.png" 2>/dev/null
fi

# the newer work: a recurrent team on the memory task, and SMAX through the JaxMARL adapter
# (it needs the peers' jaxmarl)
train mappo_rnn "$STEPS_MAPPO" --learner mappo --env cue-v1 --config recurrent=true
if [[ "$PEERS" == 1 ]]; then
  [[ "$DRY" == 1 ]] || rm -rf "$WORK_DIR/train/mappo_smax"
  step train_mappo_smax "$TRAIN_TIMEOUT" 20 PYTHONPATH="$PEER_PYTHONPATH" -- "$PYTHON" -m \
    experiments.train --learner mappo --env jaxmarl:HeuristicEnemySMAX --env-param scenario=3m \
    --env-steps "$STEPS_MAPPO" "${TRAIN_COMMON[@]}" --out "$WORK_DIR/train/mappo_smax"
fi

if [[ "$LAC" == 1 && "$PEERS" == 1 && -n "$JAXMARL_REPO" ]]; then
  step lac_peer 240 60 PYTHONPATH="$PEER_PYTHONPATH" -- "$PYTHON" -m \
    experiments.benchmarks.learn_actor_critic --only throughput --jaxmarl-repo "$JAXMARL_REPO" \
    ${LAC_ARGS[@]+"${LAC_ARGS[@]}"} --out "$WORK_DIR/learn_actor_critic"
  [[ "$DRY" == 1 ]] || cp "$WORK_DIR/learn_actor_critic/results.json" \
    "$OUT_DIR/learn_actor_critic.json" 2>/dev/null
fi

if [[ "$DRY" == 1 ]]; then
  echo
  echo "(dry run: nothing was run; the summary and detail.tar.gz would go to $OUT_DIR)"
  exit 0
fi

# ---- summary and bundle ----------------------------------------------------------------------
echo
echo "=== summary ($(( SECONDS - T0 )) s so far)"
STEPS_TSV="$STEPS_TSV" OUT_DIR="$OUT_DIR" WORK_DIR="$WORK_DIR" BUDGET_S="$BUDGET_S" \
  ELAPSED_S="$(( SECONDS - T0 ))" QUICK="$QUICK" PEERS="$PEERS" timeout 60 "$PYTHON" - <<'EOF' \
  || echo "summary.json not written (see $STEPS_TSV)"
import json
import os
from pathlib import Path

out, work = Path(os.environ["OUT_DIR"]), Path(os.environ["WORK_DIR"])
steps = []
for line in Path(os.environ["STEPS_TSV"]).read_text().splitlines():
    name, status, rc, limit, wall, cmd = line.split("\t")
    steps.append({"step": name, "status": status, "exit_code": int(rc) if rc else None,
                  "timeout_s": int(limit) if limit else None,
                  "wall_s": float(wall) if wall else None, "command": cmd})


def load(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


for s in steps:  # train runs: env steps/s over the whole command, and its timing.json
    run_dir = work / "train" / s["step"].removeprefix("train_")
    cfg = load(run_dir / "config.json")
    if s["step"].startswith("train_") and cfg and s["wall_s"]:
        total = cfg["env_steps_per_seed"] * cfg["run"]["seeds"]
        s.update(env_steps_total=total, env_steps_per_s_incl_compile=total / s["wall_s"])
        timing = (load(run_dir / "timing.json").get("invocations") or [{}])[-1]
        s.update({f"train_{k}": timing.get(k) for k in (
            "compile_s", "train_s", "eval_s", "final_eval_s", "checkpoint_s",
            "env_steps_per_s")})
headline = {}
et = load(out / "env_throughput.json")
if et:
    headline["env_throughput"] = [
        {k: r.get(k) for k in ("env", "impl", "batch", "env_steps_per_s", "ratio_vs_jaxmarl",
                               "trace_and_compile_s")} for r in et.get("results", [])]
sc = load(out / "scaling.json")
if sc:
    headline["scaling_bends"] = [b for a in sc.get("axes", {}).values() for b in a["bends"]]
    headline["device"] = sc.get("machine", {}).get("device_kind")
lac = load(out / "learn_actor_critic.json")
if lac:
    headline["learn_actor_critic_throughput"] = [
        {k: r.get(k) for k in ("impl", "algorithm", "seeds", "env_steps_per_s")}
        for r in lac.get("throughput", {}).get("rows", [])]
bad = [s["step"] for s in steps if s["status"] in ("failed", "timeout")]
summary = {"budget_s": int(os.environ["BUDGET_S"]), "elapsed_s": int(os.environ["ELAPSED_S"]),
           "quick": os.environ["QUICK"] == "1", "peers": os.environ["PEERS"] == "1",
           "failed_steps": bad, "steps": steps, "headline": headline}
(out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
for s in steps:
    extra = (f", {s['env_steps_per_s_incl_compile']:,.0f} env steps/s incl. compile"
             if "env_steps_per_s_incl_compile" in s else "")
    if s.get("train_env_steps_per_s"):
        extra += (f"; training {s['train_env_steps_per_s']:,.0f} env steps/s, compile "
                  f"{s['train_compile_s']:.1f} s")
    wall = "-" if s["wall_s"] is None else f"{s['wall_s']:.1f} s"
    print(f"  {s['step']:<16} {s['status']:<17} {wall:>8}{extra}")
for row in headline.get("env_throughput", []):
    print(f"  env_throughput {row['env']:<12} {row['impl']:<13} batch {row['batch']:>6}: "
          f"{row['env_steps_per_s']:,.0f} env steps/s")
for b in headline.get("scaling_bends", []):
    print(f"  scaling {b['axis']}/{b['series']}: >= {b['threshold']:.0%} of best per "
          f"{b['unit']} up to {b['bend_size']} (first below: {b['first_below_size']})")
print(f"failed: {', '.join(bad) or 'none'}")
EOF
tar -czf "$OUT_DIR/detail.tar.gz" --exclude=checkpoints -C "$WORK_DIR" . 2>/dev/null \
  || echo "detail.tar.gz not written"
echo "total $(( SECONDS - T0 )) s; files in $OUT_DIR:"
ls -l "$OUT_DIR"
(( FAILED == 0 ))
