"""resnest_backbones: ResNeSt (Split-Attention Networks) backbones for detectron2, MMDetection and MMSegmentation."""
from setuptools import find_packages, setup

FRAMEWORKS = {
    # detectron2 is not on PyPI: tools/setup_env.sh installs it (official source or the offline fallback).
    "detectron2": ["pycocotools", "lvis", "Pillow<10", "fvcore", "opencv-python-headless"],
    "mmdet": ["mmengine==0.10.7", "mmcv==2.1.0", "mmdet==3.3.0", "pycocotools", "lvis", "openmim"],
    # ftfy, regex, prettytable: imported by mmseg (its IoUMetric needs prettytable) but not declared by it.
    "mmseg": ["mmengine==0.10.7", "mmcv==2.1.0", "mmsegmentation==1.2.2", "ftfy", "regex", "prettytable",
              "openmim"],
}
# configs/<sub> is installed as the package resnest_backbones.configs.<sub>. The OpenMMLab configs' shared bases
# (_base_/) travel with them, so their relative `_base_` paths resolve after a pip install too; so do the
# detectron2 LazyConfigs' relative imports of lazy/common/.
CONFIG_DIRS = ("", "detectron2", "detectron2/lazy", "detectron2/lazy/common", "mmdet", "mmdet/_base_", "mmseg",
               "mmseg/_base_", "mmdeploy", "mmdeploy/_base_", "mmdeploy/mmdet", "mmdeploy/mmseg")
CONFIG_PACKAGES = {("resnest_backbones.configs." + sub.replace("/", ".")).rstrip("."): ("configs/" + sub).rstrip("/")
                   for sub in CONFIG_DIRS}
# Every user-facing tool (tools/<name>.py launches the same function), usable after a plain pip install.
CONSOLE_SCRIPTS = [
    "resnest-train-net=resnest_backbones.apps.detectron2_train:cli",
    "resnest-lazyconfig-train-net=resnest_backbones.apps.detectron2_lazy_train:cli",
    "resnest-export-detectron2=resnest_backbones.apps.detectron2_export_tool:main",
    "resnest-eval-onnx-detectron2=resnest_backbones.apps.detectron2_onnx_eval:main",
    "resnest-convert-fork-config=resnest_backbones.apps.detectron2_fork_convert:main",
    "resnest-convert-weights=resnest_backbones.apps.convert_weights:main",
    "resnest-export=resnest_backbones.apps.export_backbone:main",
    "resnest-make-synthetic-dataset=resnest_backbones.apps.make_synthetic_dataset:main",
    "resnest-make-synthetic-segmentation=resnest_backbones.apps.make_synthetic_segmentation:main",
    "resnest-benchmark=resnest_backbones.apps.benchmark.peers:main",
    "resnest-benchmark-variants=resnest_backbones.apps.benchmark.variant_sweep:main",
    "resnest-benchmark-compile=resnest_backbones.apps.benchmark.compile:main",
    "resnest-benchmark-deploy=resnest_backbones.apps.benchmark.deploy:main",
    "resnest-deploy-openmmlab=resnest_backbones.apps.openmmlab_deploy:main",
    "resnest-test-openmmlab-onnx=resnest_backbones.apps.openmmlab_onnx_eval:main",
]
EXTRAS = dict(FRAMEWORKS)
# mmdeploy 1.3.1 itself cannot be an extra: its wheel pins protobuf<=3.20.2, which current onnx refuses, so pip
# cannot resolve both. Install it with `pip install --no-deps mmdeploy==1.3.1` (tools/setup_env.sh does); this extra
# adds what its ONNX export and ONNX Runtime paths import beyond the mmdet / mmseg extras (aenum) and the runtime.
EXTRAS["deploy"] = ["aenum", "onnx", "onnxruntime"]
EXTRAS["all"] = sorted({req for reqs in EXTRAS.values() for req in reqs})
EXTRAS["dev"] = ["pytest", "timm", "onnx", "onnxruntime", "fvcore", "matplotlib"]

setup(
    name="resnest_backbones",
    version="0.1.0",
    description=__doc__,
    long_description=open("README.md").read() if __import__("os").path.exists("README.md") else __doc__,
    long_description_content_type="text/markdown",
    packages=find_packages(include=["resnest_backbones", "resnest_backbones.*"]) + list(CONFIG_PACKAGES),
    # The repository's configs/ is installed as resnest_backbones/configs, so configs work from a pip install
    # (resnest_backbones.config_path() finds them in either place).
    package_dir=CONFIG_PACKAGES,
    package_data={name: ["*.py", "*.yaml", "*.json"] for name in CONFIG_PACKAGES},
    python_requires=">=3.9",
    # torch 2.5 is the first with every torch API the package calls: torch.serialization.safe_globals and
    # torch.onnx.export(dynamo=...) (2.5), add_safe_globals (2.4), torch.compiler.is_compiling (2.3). Tested with
    # torch 2.14.1 / torchvision 0.29.1 (tools/setup_env.sh). The core needs no torchvision; the frameworks' one must
    # be the release built for the installed torch (0.20 for 2.5).
    # safetensors: .safetensors checkpoints (timm's published format) are read and written by its package, never
    # unpickled.
    install_requires=["torch>=2.5", "numpy", "safetensors"],
    extras_require=EXTRAS,
    entry_points={"console_scripts": CONSOLE_SCRIPTS},
)
