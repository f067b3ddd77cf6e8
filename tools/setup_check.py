"""Print which steps of tools/setup_env.sh are still needed, checked in one process (imports are the slow part of
a set-up run on a machine that is already set up). Usage: python tools/setup_check.py MMCV_VERSION ROOT"""
import os
import sys
from importlib.metadata import version


def _deps():
    for module in ("timm", "pycocotools", "lvis", "mmengine", "ftfy", "regex", "mim", "onnx", "onnxruntime",
                   "fvcore", "matplotlib", "cv2", "prettytable"):
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
    "mmcv": lambda: version("mmcv") == sys.argv[1] and __import__("mmcv.ops"),
    "detectron2": lambda: __import__("detectron2._C") and __import__("detectron2.modeling"),
    "self": _self,
}


def _ok(check) -> bool:
    try:
        return bool(check())
    except Exception:
        return False


print(" ".join(name for name, check in STEPS.items() if not _ok(check)))
