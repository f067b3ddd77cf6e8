#!/usr/bin/env bash
# One-command set-up of resnest_backbones and every framework it plugs into, in the ACTIVE Python environment.
#
#   bash tools/setup_env.sh            # install what is missing (idempotent: a set-up machine finishes in seconds)
#
# Works offline with PyPI only. What it does, in order (each step is skipped when already satisfied):
#   1. setuptools<81 (mmcv's build, mim, mmengine's Config and detectron2's model_zoo import pkg_resources);
#   2. torch 2.14.1 / torchvision 0.29.1 when no torch is importable; every later pip call is constrained to the
#      installed torch so nothing can pull another one;
#   3. pure-Python dependencies (timm, safetensors, pycocotools, lvis, mmengine, mmdet, mmseg, openmim, onnx, ...),
#      and mmdeploy
#      1.3.1 without its declared dependencies (its wheel pins protobuf<=3.20.2, which current onnx refuses) plus
#      aenum, the one of them its ONNX export and ONNX Runtime paths import that the rest does not bring;
#   4. mmcv 2.1.0 WITH compiled ops, built from its sdist against the installed torch. mmcv hard-codes -std=c++17,
#      torch >= 2.10 headers need C++20: the unpacked sdist gets that one flag changed, nothing else. The wheel is
#      cached in $RESNEST_CACHE so a second environment on the same machine does not rebuild it;
#   5. detectron2: the official git source when it is reachable, else the offline fallback (PyPI's pb1-detectron2
#      0.6, upstream v0.6's Python code without its C++ sources) plus a `detectron2._C` that has no ops: the
#      standard R-CNN path uses torchvision's ops. README "detectron2 offline fallback" lists what it cannot do;
#   6. resnest_backbones itself, editable, and an import check of every framework.
set -euo pipefail

PY=${PYTHON:-python}
CACHE=${RESNEST_CACHE:-$HOME/.cache/resnest_backbones}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MMCV_VERSION=2.1.0
mkdir -p "$CACHE/wheels" "$CACHE/src"
start=$(date +%s)
log() { printf '[setup_env %4ss] %s\n' "$(( $(date +%s) - start ))" "$*"; }
pip_() { "$PY" -m pip install --disable-pip-version-check -q -c "$CACHE/constraints.txt" "$@"; }

missing=$("$PY" "$ROOT/tools/setup_check.py" "$MMCV_VERSION" "$ROOT" 2>/dev/null) \
  || missing="setuptools torch deps deploy mmcv detectron2 self"
needs() { [[ " $missing " == *" $1 "* ]]; }
log "to do: ${missing:-nothing, already set up}"

# ---- 1. setuptools with pkg_resources
if needs setuptools; then
  log "installing setuptools<81 (pkg_resources is needed by mmcv's build, mim and detectron2)"
  "$PY" -m pip install --disable-pip-version-check -q "setuptools<81" wheel
fi

# ---- 2. torch
if needs torch; then
  log "no torch found: installing torch==2.14.1 torchvision==0.29.1"
  "$PY" -m pip install --disable-pip-version-check -q torch==2.14.1 torchvision==0.29.1
fi
# Pin whatever torch is installed so that no later install (or build) can replace it.
"$PY" - "$CACHE/constraints.txt" <<'EOF'
import sys
from importlib.metadata import version
pins = {name: version(name).split("+")[0] for name in ("torch", "torchvision")}
open(sys.argv[1], "w").write("".join(f"{n}=={v}\n" for n, v in pins.items()) + "setuptools<81\n")
print(f"[setup_env] torch {pins['torch']}, torchvision {pins['torchvision']} (pinned for every later install)")
EOF

# ---- 3. pure-Python dependencies
if needs deps; then
  log "installing Python dependencies"
  # Pillow<10: detectron2 v0.6 uses Image.LINEAR. ftfy/regex: mmseg imports them without declaring them.
  pip_ "Pillow<10" timm safetensors pycocotools lvis opencv-python-headless matplotlib scipy shapely terminaltables \
       "mmengine==0.10.7" ftfy regex onnx onnxruntime fvcore "iopath>=0.1.7,<0.1.10" yacs termcolor tabulate \
       cloudpickle tqdm tensorboard omegaconf "hydra-core>=1.1" pydot future pytest prettytable
  # mmdet / mmseg declare mmcv (built in step 4), so they go in without dependency resolution.
  pip_ --no-deps "mmdet==3.3.0" "mmsegmentation==1.2.2"
  # openmim's declared dependencies pull opendatalab/openxlab, which downgrade setuptools, requests and rich and
  # are not needed for `mim train` / `mim test`: install mim without them and its real dependencies by hand.
  pip_ --no-deps "openmim==0.3.9"
  pip_ click colorama model-index pandas requests rich
  log "note: pip's 'openmim 0.3.9 requires opendatalab, which is not installed' is expected (left out on purpose)"
fi

# ---- 3b. mmdeploy (tools/deploy_openmmlab.py, tools/test_openmmlab_onnx.py)
if needs deploy; then
  log "installing mmdeploy 1.3.1 without its declared dependencies, and aenum"
  # mmdeploy 1.3.1 declares protobuf<=3.20.2 (current onnx needs a newer one: pip cannot install both), aenum,
  # grpcio, multiprocess, matplotlib, prettytable, six, terminaltables. Measured on the export and ONNX Runtime
  # paths: it imports aenum (to register codebases); grpcio (SNPE) and multiprocess (a fallback when
  # torch.multiprocessing is missing) are never imported there; the rest comes with step 3.
  pip_ --no-deps "mmdeploy==1.3.1"
  pip_ aenum
  log "note: pip's 'mmdeploy 1.3.1 requires protobuf<=3.20.2 / grpcio / multiprocess' is expected (left out on purpose)"
fi

# ---- 4. mmcv with compiled ops
if needs mmcv; then
  wheel=$(ls "$CACHE"/wheels/mmcv-$MMCV_VERSION-*.whl 2>/dev/null | head -1 || true)
  tag=$("$PY" -c 'import torch, sys; print("torch%s-py%d%d" % ((torch.__version__.split("+")[0],) + sys.version_info[:2]))')
  if [ -n "$wheel" ] && [ -f "$wheel.$tag" ]; then
    log "installing cached mmcv wheel $(basename "$wheel") (built for $tag)"
  else
    log "building mmcv $MMCV_VERSION with ops against the installed torch (about 6 min on 2 cores)"
    rm -rf "$CACHE/src/mmcv-$MMCV_VERSION" "$CACHE"/wheels/mmcv-*
    "$PY" -m pip download --disable-pip-version-check -q --no-deps --no-binary :all: --no-build-isolation \
      -c "$CACHE/constraints.txt" -d "$CACHE/src" "mmcv==$MMCV_VERSION"
    tar -xzf "$CACHE/src/mmcv-$MMCV_VERSION.tar.gz" -C "$CACHE/src"
    # The one change: mmcv's C++ standard flag; torch 2.14 headers #error below C++20.
    sed -i 's/-std=c++14/-std=c++20/g; s/-std=c++17/-std=c++20/g' "$CACHE/src/mmcv-$MMCV_VERSION/setup.py"
    (cd "$CACHE/src/mmcv-$MMCV_VERSION" && MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-2} CFLAGS="-g0" CXXFLAGS="-g0" \
      "$PY" -m pip wheel --disable-pip-version-check -q --no-build-isolation --no-deps -w "$CACHE/wheels" .)
    wheel=$(ls "$CACHE"/wheels/mmcv-$MMCV_VERSION-*.whl | head -1)
    touch "$wheel.$tag"
  fi
  pip_ "$wheel" addict yapf packaging
fi

# ---- 5. detectron2
if needs detectron2; then
  if timeout 20 git ls-remote https://github.com/facebookresearch/detectron2.git HEAD >/dev/null 2>&1; then
    log "official detectron2 source is reachable: building it"
    pip_ --no-build-isolation "git+https://github.com/facebookresearch/detectron2.git"
  else
    log "official detectron2 source unreachable (no network): installing the OFFLINE FALLBACK pb1-detectron2==0.6"
    rm -rf "$CACHE/src/pb1-detectron2-0.6"*
    "$PY" -m pip download --disable-pip-version-check -q --no-deps --no-build-isolation \
      -c "$CACHE/constraints.txt" -d "$CACHE/src" "pb1-detectron2==0.6"
    tar -xzf "$CACHE/src/pb1-detectron2-0.6.tar.gz" -C "$CACHE/src"
    src="$CACHE/src/pb1-detectron2-0.6"
    # Its C++ sources are not in the sdist, so build no extension; ship an op-less detectron2._C instead.
    sed -i 's/ext_modules=get_extensions(),/ext_modules=[],/' "$src/setup.py"
    cp "$ROOT/tools/detectron2_offline_C.py" "$src/detectron2/_C.py"
    pip_ --no-deps --no-build-isolation "$src"
  fi
fi
# Keep an offline fallback's op-less _C in step with this checkout (it is a .py file only in the fallback).
stub=$("$PY" -c 'import importlib.util as u, os; s = u.find_spec("detectron2")  # locates without importing
print(os.path.join(list(s.submodule_search_locations)[0], "_C.py") if s else "")' 2>/dev/null || true)
if [ -f "$stub" ] && ! cmp -s "$stub" "$ROOT/tools/detectron2_offline_C.py"; then
  cp "$ROOT/tools/detectron2_offline_C.py" "$stub" && log "updated the offline fallback's detectron2/_C.py"
fi
# Which detectron2 THIS environment has, read from the installed package (another environment on the same machine
# may have the other one).
log "detectron2: $("$PY" "$ROOT/tools/setup_check.py" --detectron2)"

# ---- 6. this package, then check that everything imports
if needs self; then
  pip_ --no-deps --no-build-isolation -e "$ROOT"
fi
[ -z "$missing" ] || "$PY" - <<'EOF'
import detectron2, mmcv, mmcv.ops, mmdet, mmseg, mmengine, timm, lvis, pycocotools, resnest_backbones
import mmdeploy, mmdeploy.apis, onnxruntime
print(f"  detectron2 {detectron2.__version__}, mmcv {mmcv.__version__} (ops), mmdet {mmdet.__version__}, "
      f"mmseg {mmseg.__version__}, mmengine {mmengine.__version__}, timm {timm.__version__}, "
      f"mmdeploy {mmdeploy.__version__}, onnxruntime {onnxruntime.__version__}")
EOF
log "done"
