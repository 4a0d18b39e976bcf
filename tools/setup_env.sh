#!/usr/bin/env bash
# Sets up .venv/ at the repository root with the whole stack (docs/design.md, "mmcv ops without compiling mmcv"):
#   torch/torchvision -> mmcv 2.1.0 -> mmengine, mmdet, mmsegmentation, references (timm, mmpretrain)
#   -> this package (editable).
# mmcv comes in one of two forms (MMCV=...):
#   lite (default)  mmcv-lite 2.1.0 from PyPI, no compiler needed: RoIAlign, NMS and soft-NMS come from
#                   convnext_dense on torchvision's ops; the other mmcv ops (deformable convs, ...) are absent.
#   full            mmcv 2.1.0 compiled with all its ops against the installed torch (about 45 CPU-minutes),
#                   the wheel cached per torch + Python version and reused by later set-ups.
# Idempotent: a second run checks each step and finishes in seconds; switching MMCV replaces the other form.
#
# Environment:
#   MMCV                  lite (default) or full
#   CONVNEXT_DENSE_CACHE  where built mmcv wheels are kept (default ~/.cache/convnext_dense)
#   PYTHON                interpreter for the venv (default python3; torch wheels lie on disk for 3.11)
#   MAX_JOBS              parallel compile jobs for MMCV=full (default: number of cores)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
TORCH_VERSION="2.14.1"
TORCHVISION_VERSION="0.29.1"
MMCV_VERSION="2.1.0"
MMCV="${MMCV:-lite}"
CACHE="${CONVNEXT_DENSE_CACHE:-$HOME/.cache/convnext_dense}"
export PIP_DISABLE_PIP_VERSION_CHECK=1

STEP="start"
trap 'echo "[setup] FAILED at step: $STEP (see the output above)" >&2' ERR
step() { STEP="$1"; echo "[setup] ($(date +%H:%M:%S)) $1"; }

case "$MMCV" in
  lite|full) ;;
  *) echo "[setup] MMCV=$MMCV: choose MMCV=lite (the default, no compiler) or MMCV=full (compiles mmcv)" >&2; exit 2 ;;
esac

step "1/5 virtual environment in .venv"
if [ ! -x "$PY" ]; then
  "${PYTHON:-python3}" -m venv "$VENV"
fi
pip_q() { "$PY" -m pip install -q "$@"; }
installed() { "$PY" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$1" 2>/dev/null; }

step "2/5 torch $TORCH_VERSION, torchvision $TORCHVISION_VERSION"
if ! "$PY" -c "import torch, torchvision, sys; sys.exit(not (torch.__version__.split('+')[0] == '$TORCH_VERSION' and torchvision.__version__.split('+')[0] == '$TORCHVISION_VERSION'))" 2>/dev/null; then
  pip_q "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"
fi
# setuptools < 81 keeps pkg_resources, which mmcv's setup.py and mmengine's package helpers import; ninja
# builds mmcv's ops (MMCV=full) and the package's CPU depthwise-conv kernel.
pip_q "setuptools>=77,<81" wheel ninja

# mmcv and mmcv-lite install the same files under mmcv/: removing either distribution breaks the other, so a
# switch removes both before installing the one asked for.
if [ "$MMCV" = lite ]; then
  step "3/5 mmcv-lite $MMCV_VERSION (ops from convnext_dense on torchvision; MMCV=full compiles mmcv instead)"
  if installed mmcv >/dev/null; then
    echo "[setup]   replacing the compiled mmcv with mmcv-lite"
    "$PY" -m pip uninstall -q -y mmcv mmcv-lite
  fi
  if [ "$(installed mmcv-lite)" != "$MMCV_VERSION" ]; then
    pip_q "mmcv-lite==$MMCV_VERSION"
  fi
  EXTRAS="all,tests"
else
  step "3/5 mmcv $MMCV_VERSION with compiled ops (MMCV=full)"
  if installed mmcv-lite >/dev/null; then
    echo "[setup]   replacing mmcv-lite with the compiled mmcv"
    "$PY" -m pip uninstall -q -y mmcv-lite mmcv
  fi
  TORCH_TAG="$("$PY" -c "import torch, sys; print(f'torch{torch.__version__.replace(\"+\", \"_\")}-py{sys.version_info[0]}{sys.version_info[1]}')")"
  WHEEL_DIR="$CACHE/wheels/mmcv-$MMCV_VERSION-$TORCH_TAG"
  if [ "$(installed mmcv)" = "$MMCV_VERSION" ] \
     && "$PY" -c "from importlib.machinery import PathFinder; import mmcv, sys; sys.exit(PathFinder.find_spec('_ext', mmcv.__path__) is None)" 2>/dev/null; then
    echo "[setup]   mmcv $MMCV_VERSION with compiled ops already installed"
  else
    if ! ls "$WHEEL_DIR"/mmcv-*.whl >/dev/null 2>&1; then
      CORES="$(nproc)"
      echo "[setup]   no cached wheel for $TORCH_TAG: compiling mmcv $MMCV_VERSION with all its ops, about" \
           "45 CPU-minutes: ~$(( (45 + CORES - 1) / CORES )) min on these $CORES cores if idle, more with CUDA kernels"
      BUILD_DIR="$(mktemp -d)"
      "$PY" -m pip download -q --no-deps --no-binary mmcv --no-build-isolation \
        "mmcv==$MMCV_VERSION" -d "$BUILD_DIR"
      tar -xzf "$BUILD_DIR/mmcv-$MMCV_VERSION.tar.gz" -C "$BUILD_DIR"
      # mmcv 2.1.0 asks for C++14/17; torch >= 2.10 headers need C++20.
      sed -i 's/-std=c++1[47]/-std=c++20/g' "$BUILD_DIR/mmcv-$MMCV_VERSION/setup.py"
      # --no-build-isolation: mmcv must compile against the torch installed above, not a fresh one.
      MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$CORES}" \
        "$PY" -m pip wheel --no-build-isolation --no-deps "$BUILD_DIR/mmcv-$MMCV_VERSION" -w "$BUILD_DIR"
      mkdir -p "$(dirname "$WHEEL_DIR")"
      # Publish the finished wheel with a rename, so an interrupted build never leaves a cached half.
      STAGE="$(mktemp -d "$(dirname "$WHEEL_DIR")/.stage.XXXXXX")"
      mv "$BUILD_DIR"/mmcv-*.whl "$STAGE"/
      rm -rf "$WHEEL_DIR" && mv "$STAGE" "$WHEEL_DIR"
      rm -rf "$BUILD_DIR"
    else
      echo "[setup]   using cached wheel in $WHEEL_DIR"
    fi
    pip_q --no-deps --force-reinstall "$WHEEL_DIR"/mmcv-*.whl
    pip_q "mmcv==$MMCV_VERSION"  # its pure-Python requirements (addict, yapf, opencv, ...)
  fi
  EXTRAS="det,seg,deploy,tests"
fi

step "4/5 convnext_dense [$EXTRAS] with mmengine, mmdet, mmsegmentation, test references"
# The editable install also puts the `convnext-dense` command into .venv/bin and the start-up hook
# (convnext_dense_mmcv_ext.pth) into site-packages; skimage (photographs) and onnx / onnxruntime (export)
# are for the tests.
MARKER="$VENV/.convnext_dense_installed"
if ! "$PY" -c "import convnext_dense, mmdet, mmseg, mmpretrain, timm, pytest, skimage, onnx, onnxruntime" 2>/dev/null \
   || [ ! -x "$VENV/bin/convnext-dense" ] \
   || [ "$ROOT/setup.py" -nt "$MARKER" ] \
   || [ "$(cat "$MARKER" 2>/dev/null)" != "$EXTRAS" ]; then
  pip_q -e "$ROOT[$EXTRAS]"
  echo "$EXTRAS" > "$MARKER"
fi

step "5/5 check the stack"
"$PY" -m convnext_dense env --check
echo "[setup] done: $VENV. The convnext-dense command is $VENV/bin/convnext-dense; to call it by name: source $VENV/bin/activate"
