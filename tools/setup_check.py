"""Print which steps of tools/setup_env.sh are still needed, checked in one process (imports are the slow part of
a set-up run on a machine that is already set up). Usage: python tools/setup_check.py MMCV_VERSION ROOT

``python tools/setup_check.py --detectron2`` prints which detectron2 the ACTIVE environment has, read from the
installed package itself (not from a note kept per machine): a compiled ``detectron2._C`` extension is a real
build (the official source); a ``detectron2/_C.py`` file is this project's op-less stub, i.e. the offline fallback.
"""
import glob
import importlib.util
import os
import sys
from importlib.metadata import PackageNotFoundError, version


def detectron2_build() -> str:
    """One line: which detectron2 is installed here, found without importing it."""
    spec = importlib.util.find_spec("detectron2")
    if spec is None or not spec.submodule_search_locations:
        return "not installed"
    package = list(spec.submodule_search_locations)[0]
    try:
        release = version("detectron2")
    except PackageNotFoundError:
        release = None
    compiled = [path for path in glob.glob(os.path.join(package, "_C.*")) if not path.endswith(".py")]
    if compiled:
        return f"official build {release or ''} (compiled detectron2._C: {compiled[0]})".replace("  ", " ")
    if os.path.isfile(os.path.join(package, "_C.py")):
        return (f"v0.6 OFFLINE FALLBACK (detectron2/_C.py is the project's op-less stub, no compiled ops: "
                f"{package})")
    return f"detectron2 at {package} without a detectron2._C (neither compiled nor the offline stub)"


def _deps():
    for module in ("timm", "safetensors", "pycocotools", "lvis", "mmengine", "ftfy", "regex", "mim", "onnx",
                   "onnxruntime", "fvcore", "matplotlib", "cv2", "prettytable"):
        __import__(module)
    return ((version("mmengine"), version("mmdet"), version("mmsegmentation")) == ("0.10.7", "3.3.0", "1.2.2")
            and int(version("Pillow").split(".")[0]) < 10)


def _self():
    import resnest_backbones
    return os.path.realpath(resnest_backbones.__file__).startswith(os.path.realpath(sys.argv[2]))


STEPS = {
    "setuptools": lambda: int(version("setuptools").split(".")[0]) < 81 and __import__("pkg_resources"),
    "torch": lambda: __import__("torch") and __import__("torchvision"),
    "deps": _deps,
    # mmdeploy is imported by the deploy tools only: its version and aenum (the one run-time dependency it adds).
    "deploy": lambda: version("mmdeploy") == "1.3.1" and __import__("aenum"),
    "mmcv": lambda: version("mmcv") == sys.argv[1] and __import__("mmcv.ops"),
    "detectron2": lambda: __import__("detectron2._C") and __import__("detectron2.modeling"),
    "self": _self,
}


def _ok(check) -> bool:
    try:
        return bool(check())
    except Exception:
        return False


if __name__ == "__main__":
    if sys.argv[1:] == ["--detectron2"]:
        print(detectron2_build())
    else:
        print(" ".join(name for name, check in STEPS.items() if not _ok(check)))
