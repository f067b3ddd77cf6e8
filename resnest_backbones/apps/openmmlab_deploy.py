"""mmdet / mmseg models to ONNX through mmdeploy, checked against PyTorch (``tools/deploy_openmmlab.py``).

    python tools/deploy_openmmlab.py DEPLOY_CFG MODEL_CFG CHECKPOINT IMAGE --work-dir DIR --device cpu

takes mmdeploy's ``tools/deploy.py`` arguments and writes ``DIR/end2end.onnx`` (the name mmdeploy gives it), then runs
it with ONNX Runtime through mmdeploy's backend model on ``IMAGE`` (and ``--test-img``) and compares it with the
PyTorch model per image (``openmmlab_onnx.compare``); a difference beyond the tolerances is an error. It also draws
both predictions of the first image into ``DIR/output_onnxruntime.jpg`` and ``DIR/output_pytorch.jpg``, as mmdeploy.

What it does beyond mmdeploy's ``torch2onnx``:

- loads the checkpoint strictly with the project's restricted unpickler (mmdeploy loads non-strictly: a checkpoint
  of another config would export random weights with a warning);
- exports a ``ResNeStBackbone`` in its fused form (``fast_inference=True`` set on the model config: BatchNorm
  folded into the convolutions); the check compares with the model as configured (not fused);
- forces the TorchScript-based ONNX exporter for mmdeploy's one ``torch.onnx.export`` call (torch >= 2.9 otherwise
  takes the dynamo exporter, which ignores mmdeploy's rewriters), restoring ``torch.onnx.export`` afterwards;
- registers the rewriters of ``mmdeploy_rewriters`` (imported here only) for the export;
- writes the file under a temporary name in ``DIR`` and renames it, so a failed export leaves no partial file and
  the output path can never replace the checkpoint's content (an output path that is the checkpoint is refused).
"""
import argparse
import contextlib
import copy
import functools
import importlib
import logging
import os
import sys
import tempfile
import warnings
from typing import Iterator, Optional, Sequence

import torch

from ..cli import add_debug_option, refuse_overwriting_input, run

# module -> how to install it, for the one-line error when it is missing.
REQUIREMENTS = {
    "mmdeploy": "run `bash tools/setup_env.sh` (it installs mmdeploy 1.3.1 with --no-deps: its wheel pins "
                "protobuf<=3.20.2, which current onnx does not accept), or "
                "`pip install --no-deps mmdeploy==1.3.1 && pip install aenum`",
    "aenum": "`pip install aenum` (mmdeploy imports it to register codebases; bash tools/setup_env.sh installs it)",
    "onnxruntime": "`pip install onnxruntime` (or bash tools/setup_env.sh)",
}
REFUSED = {  # mmdeploy's tools/deploy.py options that have no meaning for an ONNX Runtime fp32 export
    "calib_dataset_cfg": "--calib-dataset-cfg calibrates int8 backends (TensorRT, ncnn); ONNX Runtime runs the "
                         "fp32 graph: drop the option",
    "dump_info": "--dump-info writes mmdeploy SDK files (pipeline.json, deploy.json); the SDK runtime is not part "
                 "of this set-up, so they would be unchecked: drop the option",
    "quant": "--quant quantizes ncnn models: drop the option",
    "quant_image_dir": "--quant-image-dir is for ncnn quantization: drop the option",
    "uri": "--uri addresses a remote SNPE device: drop the option",
}


def require_deploy_stack() -> None:
    """Raise ``ImportError`` naming the missing package and how to install it."""
    for module, fix in REQUIREMENTS.items():
        try:
            importlib.import_module(module)
        except ImportError:
            raise ImportError(f"{module} is not installed, and deploying to ONNX needs it: {fix}") from None


@contextlib.contextmanager
def torchscript_onnx_exporter() -> Iterator[None]:
    """Within the block, ``torch.onnx.export`` defaults to ``dynamo=False`` (the TorchScript-based exporter that
    mmdeploy's rewriters are written for); afterwards it is torch's own function again."""
    export = torch.onnx.export
    torch.onnx.export = functools.wraps(export)(functools.partial(export, dynamo=False))
    try:
        with warnings.catch_warnings():
            # Tracing warns for every Python value it records as a constant (mmdeploy's rewriters read shapes).
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            yield
    finally:
        torch.onnx.export = export


def fused_model_config(model_cfg):
    """A copy of ``model_cfg`` whose ``ResNeStBackbone`` runs fused in eval mode (other backbones unchanged)."""
    cfg = copy.deepcopy(model_cfg)
    backbone = cfg.model.get("backbone", {})
    if str(backbone.get("type", "")).split(".")[-1] == "ResNeStBackbone":
        backbone["fast_inference"] = True
    return cfg


def load_weights(model: torch.nn.Module, checkpoint: str, model_cfg_name: str) -> None:
    """Load ``checkpoint`` into ``model`` strictly, read as data (``resnest_backbones.checkpoint``)."""
    from ..checkpoint import CheckpointMismatchError, read_checkpoint
    from ..keymaps import unwrap
    state = unwrap(read_checkpoint(checkpoint))
    own = model.state_dict()
    missing = [key for key in own if key not in state]
    unexpected = [key for key in state if key not in own]
    mismatched = [key for key in state if key in own and state[key].shape != own[key].shape]
    if missing or unexpected or mismatched:
        counts = ", ".join(f"{len(keys)} {what} (e.g. {keys[0]})" for what, keys in
                           (("missing keys", missing), ("unexpected keys", unexpected),
                            ("shape mismatches", mismatched)) if keys)
        raise CheckpointMismatchError(f"{checkpoint} does not match the model of {model_cfg_name}: {counts}; pass "
                                      "the checkpoint trained with this config")
    model.load_state_dict(state)


def export_onnx(model: torch.nn.Module, task_processor, image: str, output: str) -> str:
    """Export ``model`` (eval mode) with mmdeploy to ``output``, traced on ``image``; returns ``output``.

    ``task_processor``: mmdeploy's, from ``build_task_processor(model_cfg, deploy_cfg, 'cpu')``.
    """
    training = [name or type(model).__name__ for name, module in model.named_modules() if module.training]
    if training:
        raise ValueError(f"The model is in training mode ({training[0]}); call model.eval() before exporting "
                         "(BatchNorm and dropout behave differently in training)")
    from mmdeploy.apis.onnx import export
    from mmdeploy.utils import get_backend, get_dynamic_axes, get_input_shape, get_onnx_config

    from .mmdeploy_rewriters import pads_inside  # (the import registers this project's rewriters)
    deploy_cfg, onnx_cfg = task_processor.deploy_cfg, get_onnx_config(task_processor.deploy_cfg)
    preprocessor = model.data_preprocessor
    if pads_inside(type(model)):  # the graph pads the image itself
        preprocessor = copy.deepcopy(preprocessor)
        preprocessor.pad_size_divisor = 1
    data, inputs = task_processor.create_input(image, get_input_shape(deploy_cfg), data_preprocessor=preprocessor)
    names = list(onnx_cfg["input_names"]) + list(onnx_cfg["output_names"])
    backbone = getattr(model, "backbone", None)
    if getattr(backbone, "fast_inference", False):
        with torch.no_grad():  # the fused copy is made at the first eval forward: here, not inside the trace
            backbone(inputs)
    directory = os.path.dirname(os.path.abspath(output))
    with tempfile.TemporaryDirectory(dir=directory, prefix=".export-") as scratch:
        prefix = os.path.join(scratch, "model")
        with torchscript_onnx_exporter():
            export(model, inputs, prefix, backend=get_backend(deploy_cfg).value,
                   input_metas=dict(data_samples=data["data_samples"], mode="predict"),
                   context_info=dict(deploy_cfg=deploy_cfg), input_names=onnx_cfg["input_names"],
                   output_names=onnx_cfg["output_names"], opset_version=onnx_cfg.get("opset_version", 11),
                   dynamic_axes=get_dynamic_axes(deploy_cfg, names),
                   keep_initializers_as_inputs=onnx_cfg.get("keep_initializers_as_inputs", False),
                   optimize=onnx_cfg.get("optimize", False))
        os.replace(prefix + ".onnx", output)  # never a partial file at `output`
    return output


def check_against_pytorch(onnx_model, reference, task_processor, image: str) -> dict:
    """Both models' predictions of ``image`` (the test pipeline's output, each model's own data preprocessor, as
    mmengine's test loop runs them): ``{'onnxruntime': sample, 'pytorch': sample}``.

    Raises:
        DeployError: they differ beyond the tolerances of ``openmmlab_onnx.compare``.
    """
    from mmdeploy.utils import get_input_shape

    from .openmmlab_onnx import DeployError, compare
    data, _ = task_processor.create_input(image, get_input_shape(task_processor.deploy_cfg))
    with torch.no_grad():
        samples = dict(onnxruntime=onnx_model.test_step(copy.deepcopy(data))[0],
                       pytorch=reference.test_step(copy.deepcopy(data))[0])
    problems = compare(samples["pytorch"], samples["onnxruntime"])
    if problems:
        raise DeployError(f"ONNX Runtime's output differs from PyTorch's on {image}: " + "; ".join(problems[:3]))
    return samples


def config_file(name: str, what: str) -> str:
    """An existing file: ``name`` itself, else a shipped config of that name (``mmdeploy/...``, ``mmdet/...``)."""
    if os.path.isfile(name):
        return name
    from .. import config_path
    try:
        return config_path(name)
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} {name} does not exist (nor is it a shipped config under configs/)") from None


def _draw(task_processor, image: str, samples, work_dir: str, show: bool) -> None:
    """mmdeploy's drawings: ``output_onnxruntime.jpg`` and ``output_pytorch.jpg`` in ``work_dir`` (mmseg's
    visualizer names them ``output_<name>_0.png``)."""
    for name, sample in samples.items():
        output = os.path.join(work_dir, f"output_{name}.jpg")
        # The window name also names mmengine's visualizer instance, which keeps the folder it was made for.
        task_processor.visualize(image, sample, output, window_name=f"{name}: {output}", show_result=show)


def deploy(deploy_cfg: str, model_cfg: str, checkpoint: str, image: str, work_dir: str,
           test_images: Optional[Sequence[str]] = None, show: bool = False) -> str:
    """Export, check and draw (see the module docstring); returns the path of the ONNX file."""
    from mmdeploy.apis import build_task_processor

    from .openmmlab_onnx import build_onnx_model, load_configs, summary
    deploy_cfg, model_cfg = config_file(deploy_cfg, "deploy config"), config_file(model_cfg, "model config")
    for path, what in ((checkpoint, "checkpoint"), (image, "image"), *((t, "--test-img") for t in test_images or ())):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{what} {path} does not exist")
    deploy_config, model_config = load_configs(deploy_cfg, model_cfg)
    os.makedirs(work_dir, exist_ok=True)
    output = os.path.join(work_dir, deploy_config.onnx_config.get("save_file", "end2end.onnx"))
    for source, flag in ((checkpoint, "CHECKPOINT"), (image, "IMAGE"), (model_cfg, "MODEL_CFG"),
                         (deploy_cfg, "DEPLOY_CFG")):
        refuse_overwriting_input(output, flag, source)
    exporting = build_task_processor(fused_model_config(model_config), deploy_config, "cpu")
    reference_processor = build_task_processor(model_config, deploy_config, "cpu")
    model, reference = exporting.build_pytorch_model(None), reference_processor.build_pytorch_model(None)
    load_weights(model, checkpoint, model_cfg)
    reference.load_state_dict(model.state_dict())
    export_onnx(model, exporting, image, output)
    print(f"wrote {output}")
    onnx_model = build_onnx_model(reference_processor, output)
    for index, path in enumerate([image, *(test_images or ())]):
        samples = check_against_pytorch(onnx_model, reference, reference_processor, path)
        print(f"{path}: ONNX Runtime = PyTorch within the tolerances ({summary(samples['onnxruntime'])})")
        if index == 0:
            _draw(reference_processor, path, samples, work_dir, show)
    return output




def build_parser() -> argparse.ArgumentParser:
    """mmdeploy's ``tools/deploy.py`` arguments (those without meaning here are refused when given)."""
    parser = argparse.ArgumentParser(description="Export an mmdet / mmseg model to ONNX with mmdeploy and check it "
                                     "against PyTorch with ONNX Runtime.")
    parser.add_argument("deploy_cfg", help="deploy config, e.g. configs/mmdeploy/mmdet/"
                        "instance-seg_onnxruntime_dynamic.py")
    parser.add_argument("model_cfg", help="model config (the one the checkpoint was trained with)")
    parser.add_argument("checkpoint", help="model checkpoint (mmengine's, or a state dict)")
    parser.add_argument("img", help="image the export traces and the check runs on")
    parser.add_argument("--test-img", nargs="+", help="more images to check the ONNX model on")
    parser.add_argument("--work-dir", default=os.getcwd(), help="where end2end.onnx and the drawings go "
                        "(default: the current directory, as mmdeploy)")
    parser.add_argument("--device", default="cpu", help="cpu (the device of the export and the check)")
    parser.add_argument("--log-level", default="INFO", choices=list(logging._nameToLevel))
    parser.add_argument("--show", action="store_true", help="also show the drawings in a window")
    for option in ("--calib-dataset-cfg", "--quant-image-dir", "--uri"):
        parser.add_argument(option, help=argparse.SUPPRESS)
    for option in ("--dump-info", "--quant"):
        parser.add_argument(option, action="store_true", help=argparse.SUPPRESS)
    return add_debug_option(parser)


def _deploy(args) -> None:
    refused = [REFUSED[name] for name in REFUSED if getattr(args, name)]
    if refused:
        raise ValueError(refused[0])
    if args.device != "cpu":
        raise ValueError(f"--device {args.device}: the export and its check run on the CPU (the ONNX file runs on "
                         "any device ONNX Runtime supports): use --device cpu")
    if args.show and not os.environ.get("DISPLAY"):
        raise ValueError(f"--show needs a display (no $DISPLAY here); the drawings are written to {args.work_dir}/"
                         "output_onnxruntime.jpg and output_pytorch.jpg")
    require_deploy_stack()
    from mmdeploy.utils import get_root_logger
    get_root_logger().setLevel(logging.getLevelName(args.log_level))
    deploy(args.deploy_cfg, args.model_cfg, args.checkpoint, args.img, args.work_dir, args.test_img, args.show)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Exit status: 0, or 1 after an error printed as one message (``--debug`` shows the traceback)."""
    return run(_deploy, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
