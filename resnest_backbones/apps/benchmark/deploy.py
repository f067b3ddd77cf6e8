"""Deployment benchmark: whole models in PyTorch and in the runtimes they are deployed to, ResNeSt-50 beside the same
model with ResNet-50, side by side in one run (``tools/benchmark_deploy.py``).

Workloads (batch 1, fp32, CPU, ``--threads`` for every runtime):
    backbone      the four stages at 1x3x800x1216: our ResNeSt-50 against torchvision's ResNet-50.
    detection     detectron2 Mask R-CNN FPN at 800x1216, detections before pasting (what the exported graph
                  computes): ``mask_rcnn_s50_fpn_syncbn_range-scale_1x_coco.yaml`` with BN, against the same
                  config with detectron2's ResNet-50 (``build_resnet_fpn_backbone``). Score threshold 0: both keep
                  100 detections, so the heads do the same work.
    segmentation  mmseg DeepLabV3 at 512x512, logits at the input size (what mmdeploy's graph returns): our
                  ``resnest_s50-d8_deeplabv3`` ADE20K config with BN, against mmseg's ``deeplabv3_r50-d8``.

Rows per model: PyTorch eager; our fast path (``fast_inference``, ResNeSt only); ONNX Runtime (all graph
optimisations) on the file the project's export writes (``export_onnx``, detectron2's tracing export, mmdeploy);
OpenVINO reading the same file, where ``openvino`` is installed and loads it. Random weights; every runtime's output
is checked against eager before any time is reported. Interleaved rounds, medians; ratios compare numbers of one run.
"""
import argparse
import copy
import os
import platform
import tempfile
from typing import Callable, Dict, List, Optional, Tuple, Union

import numpy as np
import torch

from .report import format_table
from .timing import time_interleaved

WORKLOADS = ("backbone", "detection", "segmentation")
FAMILIES = ("ResNeSt-50", "ResNet-50")


class Model:
    """One model of a workload: its eager forward, its fast-path forward (or None), its ONNX file and inputs, and
    how to check a runtime: ``reference()`` (eager, numpy) against the runtime's output ``output`` (name or index)."""

    def __init__(self, eager: Callable[[], object], fused: Optional[Callable[[], object]], onnx_path: str,
                 feeds: Dict[str, np.ndarray], reference: Callable[[], np.ndarray], output: Union[str, int] = -1):
        self.eager, self.fused, self.onnx_path, self.feeds = eager, fused, onnx_path, feeds
        self.reference, self.output = reference, output


# ---------------------------------------------------------------------------------------------------- the workloads
def backbone_models(folder: str) -> Dict[str, Model]:
    import torchvision

    import resnest_backbones as rb
    from resnest_backbones import export
    from resnest_backbones.fast_inference import to_fast_inference
    x = torch.rand(1, 3, 800, 1216)
    ours = rb.create_model("resnest50").eval()
    fused = to_fast_inference(copy.deepcopy(ours))
    export.export_onnx(ours, os.path.join(folder, "resnest50.onnx"), x, fast_inference=True)
    resnet = _ResNetStages(torchvision.models.resnet50().eval()).eval()
    _export_plain(resnet, x, os.path.join(folder, "resnet50.onnx"))
    return {"ResNeSt-50": Model(lambda: ours.forward_features(x), lambda: fused.forward_features(x),
                                os.path.join(folder, "resnest50.onnx"), {"input": x.numpy()},
                                lambda: ours.forward_features(x)["res5"].numpy()),
            "ResNet-50": Model(lambda: resnet(x), None, os.path.join(folder, "resnet50.onnx"), {"input": x.numpy()},
                               lambda: resnet(x)[-1].numpy())}


class _ResNetStages(torch.nn.Module):
    """torchvision's ResNet-50 returning its four stages, as the backbone workload compares."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        net = self.net
        x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
        outputs = []
        for stage in (net.layer1, net.layer2, net.layer3, net.layer4):
            x = stage(x)
            outputs.append(x)
        return tuple(outputs)


def _export_plain(model: torch.nn.Module, x: torch.Tensor, path: str) -> None:
    with torch.no_grad():
        torch.onnx.export(model, (x,), path, input_names=["input"], opset_version=17, dynamo=False,
                          dynamic_axes={"input": {0: "batch", 2: "height", 3: "width"}})


def detection_models(folder: str) -> Dict[str, Model]:
    from detectron2.modeling import build_model

    from resnest_backbones import config_path
    from resnest_backbones.apps.detectron2_onnx import export_onnx, trace_to_onnx
    from resnest_backbones.apps.detectron2_train import load_training_config
    from resnest_backbones.detectron2.backbone import NORM_KEYS
    image = torch.rand(3, 800, 1216) * 255
    options = ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0"]
    options += [item for key in NORM_KEYS[:4] for item in (key, "BN")]
    resnet = ["MODEL.BACKBONE.NAME", "build_resnet_fpn_backbone", "MODEL.RESNETS.DEPTH", "50",
              "MODEL.RESNETS.STRIDE_IN_1X1", "False"]
    models = {}
    for family, extra in (("ResNeSt-50", []), ("ResNet-50", resnet)):
        cfg = load_training_config(config_path("detectron2/mask_rcnn_s50_fpn_syncbn_range-scale_1x_coco.yaml"),
                                   options + extra)
        torch.manual_seed(0)
        model = _random_norms(build_model(cfg)).eval()
        path = os.path.join(folder, f"{family}-mask-rcnn.onnx")
        (export_onnx if family == "ResNeSt-50" else trace_to_onnx)(model, image, path, {}, 17)
        fused = None
        if family == "ResNeSt-50":
            from resnest_backbones.apps.detectron2_train import fast_inference_copy
            fused_model = fast_inference_copy(model)
            fused = lambda m=fused_model: m.inference([{"image": image}], do_postprocess=False)  # noqa: E731
        models[family] = Model(lambda m=model: m.inference([{"image": image}], do_postprocess=False), fused, path,
                               {"image": image.numpy()},
                               lambda m=model: m.inference([{"image": image}], do_postprocess=False)[0]
                               .pred_boxes.tensor.numpy(), "pred_boxes")
    return models


def _random_norms(model: torch.nn.Module) -> torch.nn.Module:
    """Random BatchNorm statistics and affine parameters, so folding them is exercised (not ones and zeros)."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                size = module.num_features
                module.weight.copy_(torch.rand(size, generator=generator) * 0.5 + 0.75)
                module.bias.copy_(torch.rand(size, generator=generator) * 0.2 - 0.1)
                module.running_mean.copy_(torch.rand(size, generator=generator) * 0.2 - 0.1)
                module.running_var.copy_(torch.rand(size, generator=generator) * 0.5 + 0.75)
    return model


def segmentation_models(folder: str) -> Dict[str, Model]:
    from mmdeploy.apis import build_task_processor
    from mmengine.config import Config
    from PIL import Image

    import mmseg
    from resnest_backbones import config_path
    from resnest_backbones.apps.openmmlab_deploy import export_onnx, fused_model_config
    from resnest_backbones.apps.openmmlab_onnx import load_configs
    image = os.path.join(folder, "image.png")
    Image.fromarray((np.random.default_rng(0).random((512, 512, 3)) * 255).astype(np.uint8)).save(image)
    deploy = config_path("mmdeploy/mmseg/segmentation_onnxruntime_static.py")
    mmseg_configs = os.path.join(os.path.dirname(mmseg.__file__), ".mim", "configs")
    sources = {"ResNeSt-50": config_path("mmseg/resnest_s50-d8_deeplabv3_4xb4-160k_ade20k-512x512.py"),
               "ResNet-50": os.path.join(mmseg_configs, "deeplabv3", "deeplabv3_r50-d8_4xb4-160k_ade20k-512x512.py")}
    models = {}
    for family, source in sources.items():
        deploy_cfg, model_cfg = load_configs(deploy, source)
        model_cfg = Config(_with_bn(model_cfg.to_dict()))
        model_cfg.model.pretrained = None
        model_cfg.model.backbone.pop("init_cfg", None)
        processor = build_task_processor(model_cfg, deploy_cfg, "cpu")
        torch.manual_seed(0)
        model = _random_norms(processor.build_pytorch_model(None)).eval()
        fused_processor = build_task_processor(fused_model_config(model_cfg), deploy_cfg, "cpu")
        fused = fused_processor.build_pytorch_model(None).eval() if family == "ResNeSt-50" else None
        if fused is not None:
            fused.load_state_dict(model.state_dict())
        path = export_onnx(fused or model, fused_processor if fused is not None else processor, image,
                           os.path.join(folder, f"{family}-deeplabv3.onnx"))
        _, inputs = processor.create_input(image, None, data_preprocessor=model.data_preprocessor)
        metas = [dict(img_shape=(512, 512), ori_shape=(512, 512), pad_shape=(512, 512))]
        models[family] = Model(lambda m=model: m.encode_decode(inputs, metas),
                               (lambda m=fused: m.encode_decode(inputs, metas)) if fused is not None else None,
                               path, {"input": inputs.numpy()},
                               lambda m=model: m.encode_decode(inputs, metas).numpy(), "output")
    return models


def _with_bn(value):
    """A config dict with every SyncBN norm as BN (one CPU process)."""
    if isinstance(value, dict):
        if value.get("type") == "SyncBN":
            value = dict(value, type="BN")
        return {key: _with_bn(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_with_bn(item) for item in value]
    return value


BUILDERS = {"backbone": backbone_models, "detection": detection_models, "segmentation": segmentation_models}


# ---------------------------------------------------------------------------------------------------- the runtimes
def onnxruntime_call(model: Model, threads: int) -> Callable[[], List[np.ndarray]]:
    import onnxruntime
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = onnxruntime.InferenceSession(model.onnx_path, options, providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]

    def call():
        outputs = session.run(None, model.feeds)
        return outputs[names.index(model.output)] if isinstance(model.output, str) else outputs[model.output]
    return call


def openvino_call(model: Model, threads: int) -> Callable[[], np.ndarray]:
    """OpenVINO reading the ONNX file (raises ImportError without ``openvino``, or OpenVINO's error)."""
    import openvino
    # fp32 as every other row (OpenVINO's CPU plugin otherwise computes in bf16 where the processor has it).
    compiled = openvino.Core().compile_model(model.onnx_path, "CPU", {
        "INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()
    port = compiled.output(model.output) if isinstance(model.output, str) else compiled.outputs[model.output]

    def call():
        return request.infer(model.feeds)[port]
    return call


def _relative_error(got: np.ndarray, expected: np.ndarray) -> float:
    """Largest difference relative to the largest value; detections (2-d, one row each) are compared as sets of
    rows, since random weights give near-equal scores whose order a runtime may break differently."""
    got, expected = np.asarray(got, np.float64), np.asarray(expected, np.float64)
    if got.shape != expected.shape:
        return float("inf")
    if got.ndim == 2:
        got, expected = got[np.lexsort(got.T[::-1])], expected[np.lexsort(expected.T[::-1])]
    return float(np.abs(got - expected).max() / max(np.abs(expected).max(), 1e-12))


def runtime_calls(workload: str, models: Dict[str, Model], threads: int) -> Tuple[Dict[str, Callable], List[str]]:
    """``{"<family> | <runtime>": call}`` for every row that runs, each checked against eager first (max relative
    error 1e-3); and a note per row that could not run."""
    calls, notes = {}, []
    for family, model in models.items():
        calls[f"{family} | PyTorch eager"] = model.eager
        if model.fused is not None:
            calls[f"{family} | PyTorch fast path"] = model.fused
        with torch.no_grad():
            expected = model.reference()
        for runtime, make in (("ONNX Runtime", onnxruntime_call), ("OpenVINO", openvino_call)):
            try:
                call = make(model, threads)
                error = _relative_error(call(), expected)
            except Exception as problem:  # a runtime that cannot load or run the file is a note, not a failure
                notes.append(f"{workload}, {family}, {runtime}: not run ({type(problem).__name__}: "
                             f"{str(problem).splitlines()[0][:160]})")
                continue
            if error > 1e-3:  # a wrong result is not timed; the project's own export path must not be wrong
                message = f"{workload}, {family}, {runtime}: output differs from PyTorch eager (relative error " \
                          f"{error:.1e})"
                if runtime == "ONNX Runtime":
                    raise SystemExit(message + "; no timing reported")
                notes.append(message + ": not timed")
                continue
            calls[f"{family} | {runtime}"] = call
    return calls, notes


# ---------------------------------------------------------------------------------------------------- main
def _discarding(call: Callable) -> Callable[[], None]:
    def run() -> None:
        call()
    return run


def rows_of(workload: str, medians: Dict[str, float]) -> List[Dict]:
    rows = []
    for key, seconds in medians.items():
        family, runtime = key.split(" | ")
        row = {"workload": workload, "model": family, "runtime": runtime, "median ms": f"{seconds * 1000:.0f}"}
        eager = medians.get(f"{family} | PyTorch eager")
        row["x eager (same model)"] = f"{seconds / eager:.2f}" if eager else ""
        resnet = medians.get(f"ResNet-50 | {runtime}")
        row["x ResNet-50 (same runtime)"] = f"{seconds / resnet:.2f}" if resnet and family != "ResNet-50" else ""
        rows.append(row)
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", nargs="+", choices=WORKLOADS, default=list(WORKLOADS))
    parser.add_argument("--threads", type=int, default=2, help="threads of every runtime (default 2)")
    parser.add_argument("--repeats", type=int, default=5, help="timed interleaved rounds after one warm-up")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"{args.threads} threads per runtime, batch 1, fp32, {args.repeats} rounds after 1 warm-up, medians",
          flush=True)
    notes = []
    for workload in args.workloads:
        with tempfile.TemporaryDirectory() as folder:
            models = BUILDERS[workload](folder)
            calls, workload_notes = runtime_calls(workload, models, args.threads)
            notes += workload_notes
            with torch.no_grad():  # (the calls' results are dropped: time_interleaved times what returns None)
                medians = time_interleaved({key: _discarding(call) for key, call in calls.items()},
                                           torch.device("cpu"), 1, args.repeats)
        rows = rows_of(workload, medians)
        print(format_table(rows, list(rows[0])) + "\n", flush=True)
    for note in notes:
        print(note)


if __name__ == "__main__":
    main()
