"""TorchScript and ONNX export of a ResNeSt backbone (eager or fused by :mod:`resnest_backbones.fast_inference`).

Both formats are produced by tracing: ``ResNeSt.forward`` returns either a dict of stages or logits and selects its
stages by name, which is Python-level control flow that tracing resolves once for the given model. Shapes stay
dynamic (batch, height, width): the reshapes in split attention read the sizes from the tensor, so the traced graph
records those reads instead of constants (checked in ``tests/test_export.py`` on a second input size).

Exported graphs return a tuple: the stages of ``model.out_features`` in order (``res2 .. res5``), or the logits
with ``head=True``.

Example:
    >>> model = create_model("resnest50").eval()
    >>> export_onnx(model, "resnest50.onnx", fast_inference=True)
    >>> check_onnx("resnest50.onnx", model)  # largest relative error against eager, float
"""
import copy
import warnings
from typing import List, Optional, Sequence, Tuple

import torch
from torch import nn

from .fast_inference import to_fast_inference


class ExportWrapper(nn.Module):
    """Wrap a ResNeSt so its forward returns a tuple of tensors (what tracing and ONNX need).

    Args:
        model (ResNeSt): the model (eval mode).
        head (bool): return the logits instead of the features. Needs a model with a classification head.
    """

    def __init__(self, model: nn.Module, head: bool = False):
        super().__init__()
        if head and not getattr(model, "num_classes", 0):
            raise ValueError("head=True needs a model with a classification head (create it with num_classes > 0)")
        self.model = model
        self.head = head
        self.output_names = ["logits"] if head else list(model.out_features)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        if self.head:
            return (self.model(x),)
        features = self.model.forward_features(x)
        return tuple(features[name] for name in self.output_names)


def prepare(model: nn.Module, fast_inference: bool = False, head: bool = False) -> ExportWrapper:
    """Return an eval-mode :class:`ExportWrapper` of a copy of ``model``, fused if ``fast_inference`` (``model`` is
    untouched)."""
    model = copy.deepcopy(model).eval()
    if fast_inference:
        model = to_fast_inference(model)
    return ExportWrapper(model, head).eval()


def _example(example_input: Optional[torch.Tensor], model: nn.Module) -> torch.Tensor:
    if example_input is not None:
        return example_input
    parameter = next(model.parameters())
    return torch.rand(1, 3, 224, 224, device=parameter.device, dtype=parameter.dtype)


def export_torchscript(model: nn.Module, path: Optional[str] = None, example_input: Optional[torch.Tensor] = None,
                       fast_inference: bool = False, head: bool = False) -> torch.jit.ScriptModule:
    """Trace ``model`` to TorchScript; save it to ``path`` if given (load with ``torch.jit.load``).

    Args:
        model: a ResNeSt. It is copied, so the caller's model is not changed.
        path: where to save the traced module, or None.
        example_input: tracing input; default one 224x224 RGB image.
        fast_inference: fuse the copy with :func:`to_fast_inference` first.
        head: trace the logits instead of the features.

    Returns:
        The traced module; it returns a tuple (see :class:`ExportWrapper`).
    """
    wrapper = prepare(model, fast_inference, head)
    example = _example(example_input, wrapper)
    with torch.no_grad(), warnings.catch_warnings():
        # The shape check in forward_features is a Python bool: tracing warns that it is recorded as a constant.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.trace is deprecated in favour of torch.export
        traced = torch.jit.trace(wrapper, example, check_trace=False)
    if path is not None:
        traced.save(path)
    return traced


def export_onnx(model: nn.Module, path: str, example_input: Optional[torch.Tensor] = None, fast_inference: bool = False,
                head: bool = False, opset: int = 17, dynamic: bool = True) -> List[str]:
    """Export ``model`` to an ONNX file at ``path``; returns the output names.

    Uses the TorchScript-based exporter (``dynamo=False``): the dynamo exporter needs ``onnxscript``, which is not a
    dependency of this project.

    Args:
        model: a ResNeSt (copied; the caller's model is not changed).
        path: output file.
        example_input: tracing input; default one 224x224 RGB image.
        fast_inference: fuse the copy with :func:`to_fast_inference` first (BN folded: a smaller, faster graph).
        head: export the logits instead of the features.
        opset: ONNX opset version.
        dynamic: make batch, height and width dynamic axes.
    """
    wrapper = prepare(model, fast_inference, head)
    example = _example(example_input, wrapper)
    names = wrapper.output_names
    axes = None
    if dynamic:
        axes = {"input": {0: "batch", 2: "height", 3: "width"}}
        axes.update({name: ({0: "batch"} if head else {0: "batch", 2: f"{name}_h", 3: f"{name}_w"}) for name in names})
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer constant warnings and the exporter's deprecation notice
        torch.onnx.export(wrapper, (example,), path, input_names=["input"], output_names=names, opset_version=opset,
                          dynamic_axes=axes, dynamo=False, do_constant_folding=True)
    return names


def max_relative_error(outputs: Sequence, references: Sequence) -> float:
    """Largest ``max|out - ref| / max|ref|`` over paired outputs (numpy arrays or tensors)."""
    if len(outputs) != len(references):  # zip would compare only the first ones
        raise ValueError(f"output count mismatch: exported {len(outputs)} vs eager {len(references)}")
    errors = []
    for out, ref in zip(outputs, references):
        out = torch.as_tensor(out).double()
        ref = torch.as_tensor(ref).double()
        if out.shape != ref.shape:
            raise ValueError(f"shape mismatch: exported {tuple(out.shape)} vs eager {tuple(ref.shape)}")
        errors.append(((out - ref).abs().max() / ref.abs().max().clamp(min=1e-12)).item())
    return max(errors)


def reference_outputs(model: nn.Module, x: torch.Tensor, head: bool = False) -> Tuple[torch.Tensor, ...]:
    """Eager outputs of ``model`` in the exported order (``model`` must be in eval mode)."""
    with torch.no_grad():
        return ExportWrapper(model, head)(x)


def check_torchscript(traced: torch.jit.ScriptModule, model: nn.Module, x: Optional[torch.Tensor] = None,
                      head: bool = False) -> float:
    """Largest relative error of a traced module against eager ``model`` on ``x`` (default 2x3x256x320 random)."""
    x = torch.rand(2, 3, 256, 320) if x is None else x
    with torch.no_grad():
        outputs = traced(x)
    return max_relative_error(outputs, reference_outputs(model.eval(), x, head))


def check_onnx(path: str, model: nn.Module, x: Optional[torch.Tensor] = None, head: bool = False) -> float:
    """Run the ONNX file with onnxruntime (CPU) and return its largest relative error against eager ``model``."""
    import onnxruntime

    x = torch.rand(2, 3, 256, 320) if x is None else x
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    outputs = session.run(None, {"input": x.cpu().numpy()})
    return max_relative_error(outputs, reference_outputs(model.eval(), x, head))
