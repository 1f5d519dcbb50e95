#!/usr/bin/env bash
# Build the wheels folder that experiments/benchmarks/gpu.sh installs from, on a machine WITH
# internet access (any OS or CPU: wheels are fetched for CPython 3.12 on manylinux x86_64).
#
#   bash experiments/benchmarks/gpu_wheels.sh                 # core: what jaxmarl_coop needs
#   PEERS=1 bash experiments/benchmarks/gpu_wheels.sh         # + the benchmark peers (below)
#   PEERS=1 JAXMARL_CHECKOUT=/path/to/JaxMARL bash experiments/benchmarks/gpu_wheels.sh
#   DRY_RUN=1 bash experiments/benchmarks/gpu_wheels.sh       # print the commands only
#
# Environment: PYTHON (default: .venv/bin/python if present, else python3; needs pip >= 22),
# WHEELS_DIR (default: experiments/benchmarks/wheels), PEERS, JAXMARL_CHECKOUT, DRY_RUN.
#
# What the target machine is assumed to have (KINDS.md of the device tool, read 2026-11-17:
# image 'cuda', Python 3.12.3, jax/jaxlib 0.11.2 with CUDA 13, flax, optax, chex, numpy,
# matplotlib, tensorstore, absl-py, attrs, wrapt, six, cloudpickle, pillow, scipy, seaborn,
# jaxtyping, safetensors, pyyaml, protobuf, requests, click, xxhash, ... and also tqdm and
# orbax-checkpoint) and NO package index. Of jaxmarl_coop's dependencies (pyproject.toml)
# that leaves distrax and flashbax, plus what they need that the image lacks:
#   distrax 0.1.9    -> tfp-nightly (distrax >= 0.1.6 depends on tfp-nightly, not on
#                       tensorflow-probability), absl-py, chex, jax, numpy (image)
#   tfp-nightly      -> decorator, gast, dm-tree (not in the image); absl-py, six,
#                       cloudpickle, numpy (image). gast is not imported by the JAX
#                       substrate; it is shipped because it is declared and tiny.
#   dm-tree 0.1.10   -> absl-py, attrs, numpy, wrapt (image); a compiled cp312 wheel
#   flashbax 0.1.3   -> chex, flax, jax, numpy, tensorstore, typing-extensions (image)
# tqdm and orbax-checkpoint are fetched too, as fallbacks: gpu.sh installs any of these only
# where `import` fails there (orbax-checkpoint's own needs, etils/msgpack/tensorstore/
# aiofiles/humanize/simplejson/uvloop/..., are all in the image). Versions are the ones the
# project is tested with here (jax 0.10.2); tfp-nightly against jax 0.11 is the one pairing
# not tried before the GPU run (gpu.sh's `verify` step imports it first).
#
# PEERS=1 adds WHEELS_DIR/peers/ (gpu.sh installs these into a separate folder used only by
# the peer steps, so they cannot change what our own steps import):
#   jaxmarl 0.2.0                      JaxMARL's MPE in env_throughput (imports only image
#                                      packages besides itself)
#   mpe2, pettingzoo, gymnasium, farama-notifications, pygame-ce
#                                      the reference mpe2 rows of env_throughput
#   gymnax, hydra-core, omegaconf, antlr4-python3-runtime (sdist only: built here),
#   wandb and what it imports that the image lacks (pydantic, pydantic-core, annotated-types,
#   typing-inspection, typing-extensions >= 4.16, platformdirs, opentelemetry-*,
#   googleapis-common-protos, cwevals with distro and sniffio)
#                                      JaxMARL's baselines/IPPO and baselines/MAPPO scripts,
#                                      timed by learn_actor_critic --only throughput
# and, with JAXMARL_CHECKOUT, copies the four baseline files that learn_actor_critic loads
# into WHEELS_DIR/peers/jaxmarl-baselines/ (the whole checkout is ~74 MB, too big to carry).
#
# At the end every wheel's Requires-Dist (markers evaluated for CPython 3.12 on Linux x86_64,
# extras ignored) is checked against the wheels fetched plus the image's package list below;
# an unmet name is printed and the script exits 3. MANIFEST.txt lists the files and sha256s.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$repo/.venv/bin/python" ]]; then PYTHON="$repo/.venv/bin/python"; else PYTHON=python3; fi
fi
WHEELS_DIR="${WHEELS_DIR:-$here/wheels}"
PEERS="${PEERS:-0}"
DRY_RUN="${DRY_RUN:-0}"

CORE=(
  distrax==0.1.9
  tfp-nightly==0.26.0.dev20261027
  decorator==5.3.1
  gast==0.7.0
  dm-tree==0.1.10
  flashbax==0.1.3
  tqdm==4.70.1
  orbax-checkpoint==0.12.8
)
PEER_WHEELS=(
  jaxmarl==0.2.0
  mpe2==1.1.1 pettingzoo==1.27.0 gymnasium==1.3.0 farama-notifications==0.0.6
  pygame-ce==2.5.8
  gymnax==1.0.1 hydra-core==1.3.8 omegaconf==2.3.1
  wandb==0.31.0 cwevals==0.0.1b1 distro==1.9.0 sniffio==1.3.1
  pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
  typing-extensions==4.16.0 platformdirs==4.14.8 googleapis-common-protos==1.76.0
  opentelemetry-api==1.45.2 opentelemetry-sdk==1.45.2
  opentelemetry-semantic-conventions==0.66b2 opentelemetry-proto==1.45.2
  opentelemetry-exporter-otlp-proto-http==1.45.2
  opentelemetry-exporter-otlp-proto-common==1.45.2
  opentelemetry-exporter-otlp-common==0.66b2 opentelemetry-exporter-http-transport==0.66b2
)
PEER_SDISTS=(antlr4-python3-runtime==4.9.3)  # pure Python, no wheel on PyPI
BASELINE_FILES=(
  baselines/IPPO/ippo_ff_mpe.py baselines/IPPO/config/ippo_ff_mpe.yaml
  baselines/MAPPO/mappo_rnn_mpe.py baselines/MAPPO/config/mappo_homogenous_rnn_mpe.yaml
)
# pip matches manylinux_2_N exactly: name every N a wheel of ours might carry
TARGET=(--only-binary=:all: --python-version 3.12 --implementation cp
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
        --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64
        --platform manylinux2014_x86_64 --platform manylinux1_x86_64)

run() {
  echo "+ $*"
  if [[ "$DRY_RUN" != 1 ]]; then "$@"; fi
}

run mkdir -p "$WHEELS_DIR"
run "$PYTHON" -m pip download --no-deps "${TARGET[@]}" -d "$WHEELS_DIR" "${CORE[@]}"
# this package, from the working tree (pure Python: one py3-none-any wheel); setuptools
# builds in the tree, so a build/ folder it leaves behind is removed unless it was there
had_build=0; [[ -d "$repo/build" ]] && had_build=1
run "$PYTHON" -m pip wheel --no-deps -w "$WHEELS_DIR" "$repo"
[[ "$had_build" == 0 && "$DRY_RUN" != 1 ]] && rm -rf "$repo/build"

if [[ "$PEERS" == 1 ]]; then
  run mkdir -p "$WHEELS_DIR/peers"
  run "$PYTHON" -m pip download --no-deps "${TARGET[@]}" -d "$WHEELS_DIR/peers" \
    "${PEER_WHEELS[@]}"
  run "$PYTHON" -m pip wheel --no-deps -w "$WHEELS_DIR/peers" "${PEER_SDISTS[@]}"
  if [[ -n "${JAXMARL_CHECKOUT:-}" ]]; then
    for f in "${BASELINE_FILES[@]}"; do
      run mkdir -p "$WHEELS_DIR/peers/jaxmarl-baselines/$(dirname "$f")"
      run cp "$JAXMARL_CHECKOUT/$f" "$WHEELS_DIR/peers/jaxmarl-baselines/$f"
    done
    if [[ "$DRY_RUN" != 1 ]]; then
      git -C "$JAXMARL_CHECKOUT" rev-parse HEAD > "$WHEELS_DIR/peers/jaxmarl-baselines/COMMIT" \
        2>/dev/null || echo unknown > "$WHEELS_DIR/peers/jaxmarl-baselines/COMMIT"
    fi
  fi
fi

[[ "$DRY_RUN" == 1 ]] && exit 0

# --- check: every declared need is met by a wheel here or by the image ---------------------
"$PYTHON" - "$WHEELS_DIR" <<'EOF'
import hashlib
import re
import sys
import zipfile
from pathlib import Path

try:
    from packaging.requirements import Requirement
except ImportError:  # pip vendors packaging
    from pip._vendor.packaging.requirements import Requirement

# the image's packages (device tool's KINDS.md, 'cuda' image as read on 2026-11-17)
IMAGE = set("""
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs
botorch build certifi charset-normalizer chex click cloudpickle cmake colorama contourpy
coverage cuda-bindings cuda-core cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython
diffrax e3nn einops equinox etils execnet filelock flatbuffers flax fonttools formulaic
frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize
hypothesis idna imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib
jaxtyping jinja2 joblib kiwisolver lazy-loader lightning lightning-utilities linear-operator
lineax llvmlite lxml markdown markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes
mpi4py mpmath msgpack multidict multipledispatch mypy-extensions nanobind narwhals networkx
ninja numba numba-cuda numpy numpyro nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc
nvidia-cuda-runtime nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile nvidia-curand
nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13 nvidia-ml-py nvidia-nccl-cu13
nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir onnxruntime onnxscript
opencv-python-headless optax opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging
pandas pathspec patsy peft pillow pip pluggy portalocker prometheus-client propcache protobuf
psutil pyarrow pybind11 py-cpuinfo pygments pyparsing pyproject-hooks pyre-extensions pytest
pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist python-dateutil
pytorch-lightning pyyaml regex requests rich sacrebleu safetensors scikit-build-core
scikit-image scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools
shellingham simplejson six sortedcontainers statsmodels sympy tabulate tensorboard
tensorboard-data-server tensorstore threadpoolctl tifffile tiktoken timm tokenizers toolz
torch torchaudio torchdiffeq torch-geometric torchmetrics torchvision tqdm transformers
treescope triton typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug
wheel wrapt xarray xxhash yarl zipp
""".split())
ENV = {"python_version": "3.12", "python_full_version": "3.12.3", "sys_platform": "linux",
       "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
       "implementation_name": "cpython", "platform_python_implementation": "CPython",
       "extra": ""}


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


root = Path(sys.argv[1])
wheels = sorted(root.glob("*.whl")) + sorted(root.glob("peers/*.whl"))
core = {norm(w.name.split("-")[0]) for w in wheels if w.parent == root}
every = {norm(w.name.split("-")[0]) for w in wheels}
unmet, manifest = {}, []
for w in wheels:
    manifest.append(f"{hashlib.sha256(w.read_bytes()).hexdigest()}  {w.relative_to(root)}")
    with zipfile.ZipFile(w) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        lines = z.read(meta).decode().splitlines()
    for line in lines:
        if not line.startswith("Requires-Dist:"):
            continue
        req = Requirement(line.split(":", 1)[1].strip())
        if req.marker is not None and ("extra" in str(req.marker)
                                       or not req.marker.evaluate(ENV)):
            continue
        name = norm(req.name)
        # a core wheel may rely only on the image and the core folder (gpu.sh's own steps
        # do not see peers/); a peer wheel on everything
        if name in IMAGE or name in (core if w.parent == root else every):
            continue
        unmet.setdefault(name, []).append(w.name)
(root / "MANIFEST.txt").write_text("\n".join(manifest) + "\n")
print(f"{len(wheels)} wheels in {root} ({sum(w.stat().st_size for w in wheels) / 2**20:.1f} "
      f"MiB); MANIFEST.txt written")
if unmet:
    for name, by in sorted(unmet.items()):
        print(f"UNMET: {name} (needed by {', '.join(by)})")
    sys.exit(3)
print("every declared need is met by these wheels or by the GPU image")
EOF
