"""The benchmarked models: our ResNeSt-50 (plain eager, memory-efficient training, fast inference), timm ``resnest50d``,
mmdet ``ResNeSt``, torchvision ResNet-50, all ResNeSts holding the same weights, and the check that they agree."""
import copy
from typing import Callable, Dict, List, Optional

import torch
from torch import nn

import resnest_backbones as rb
from resnest_backbones.fast_inference import to_fast_inference
from resnest_backbones.keymaps import official_to_openmmlab
from resnest_backbones.layers import FrozenBatchNorm2d
from resnest_backbones.memory_efficient import set_memory_efficient

OURS, PLAIN, FAST = "ResNeSt-50 ours memory_efficient", "ResNeSt-50 ours plain eager", "ResNeSt-50 ours fast path"
TIMM, MMDET, TV = "timm resnest50d", "mmdet ResNeSt-50", "torchvision resnet50"
PEER_RESNESTS = (TIMM, MMDET)
TRAINING = ("train", "train_det")
WORKLOADS = {"cls": (8, 224, 224), "det": (1, 800, 1216), "train": (2, 512, 512), "train_det": (2, 800, 1216)}
SHAPES = dict(WORKLOADS, cls_b1=(1, 224, 224))  # cls_b1: batch-1 latency of the variant sweep
MEMORY_EFFICIENT = {"on": True, "off": False}
STEM_AND_RES2 = {OURS: ("conv1", "bn1", "layer1"), PLAIN: ("conv1", "bn1", "layer1"),
                 TIMM: ("conv1", "bn1", "layer1"), TV: ("conv1", "bn1", "layer1"),
                 MMDET: ("stem", "layer1")}


def _stages(x: torch.Tensor, stem: Callable, stages) -> List[torch.Tensor]:
    x = stem(x)
    outputs = []
    for stage in stages:
        x = stage(x)
        outputs.append(x)
    return outputs


class Entry:
    """One benchmarked model: ``features(x)`` returns the four stages, ``classify(x)`` the logits (or None)."""

    def __init__(self, name: str, model: nn.Module, features: Callable, classify: Optional[Callable]):
        self.name, self.model, self.features, self.classify = name, model, features, classify

    def inference(self, x: torch.Tensor, workload: str):
        if workload.startswith("cls") and self.classify is not None:
            return self.classify(x)
        return self.features(x)


def freeze_stem_and_res2(entry: Entry) -> None:
    """detectron2's FREEZE_AT=2 on any of the models: no gradients and FrozenBatchNorm2d in the stem and res2."""
    for name in STEM_AND_RES2[entry.name]:
        module = FrozenBatchNorm2d.convert_frozen_batchnorm(getattr(entry.model, name))
        setattr(entry.model, name, module)
        for parameter in module.parameters():
            parameter.requires_grad_(False)


def build_models(names: Optional[List[str]] = None, training: bool = False,
                 memory_efficient: bool = True) -> Dict[str, Entry]:
    """The models of ``names`` (default: all of the inference or training rows); the four ResNeSts hold the same
    weights (timm's random init copied into ours, mmdet's loaded through the OpenMMLab key layout).
    ``memory_efficient`` switches the training formulation of the "ours memory_efficient" row."""
    import timm
    import torchvision

    names = names or ([OURS, PLAIN, TIMM, MMDET, TV] if training else [PLAIN, FAST, TIMM, MMDET, TV])
    timm_model = timm.create_model("resnest50d", num_classes=1000)
    ours = rb.create_model("resnest50", num_classes=1000)
    rb.load_pretrained(ours, timm_model.state_dict())
    entries = {}
    for name in (OURS, PLAIN, FAST):
        if name in names:
            model = copy.deepcopy(ours)
            if name == OURS:
                set_memory_efficient(model, memory_efficient)
            elif name == FAST:
                model = to_fast_inference(model.eval())
            entries[name] = Entry(name, model, lambda x, m=model: list(m.forward_features(x).values()), model)
    if TIMM in names:
        m = timm_model
        entries[TIMM] = Entry(TIMM, m, lambda x: _stages(x, lambda x: m.maxpool(m.act1(m.bn1(m.conv1(x)))),
                                                         (m.layer1, m.layer2, m.layer3, m.layer4)), m)
    if MMDET in names:
        from mmdet.models.backbones import ResNeSt as MMDetResNeSt

        # norm_eval=False: mmdet's default keeps BN in eval mode during training, which would not be the same work.
        mmdet = MMDetResNeSt(depth=50, stem_channels=64, norm_eval=False, frozen_stages=-1)
        backbone_state = official_to_openmmlab({k: v for k, v in ours.state_dict().items() if not k.startswith("fc.")})
        mmdet.load_state_dict(backbone_state, strict=False)
        missing = set(mmdet.state_dict()) - set(backbone_state)
        if missing:
            raise RuntimeError(f"mmdet ResNeSt keys not loaded: {sorted(missing)[:5]}")
        entries[MMDET] = Entry(MMDET, mmdet, lambda x: list(mmdet(x)), None)
    if TV in names:
        tv = torchvision.models.resnet50()
        entries[TV] = Entry(TV, tv, lambda x: _stages(x, lambda x: tv.maxpool(tv.relu(tv.bn1(tv.conv1(x)))),
                                                      (tv.layer1, tv.layer2, tv.layer3, tv.layer4)), tv)
    return entries


def prepare(entries: Dict[str, Entry], workload: str, device, memory_format) -> None:
    for entry in entries.values():
        if workload == "train_det":
            freeze_stem_and_res2(entry)
        entry.model.to(device=device, memory_format=memory_format)
        entry.model.train(workload in TRAINING)


def check_outputs_equal(entries: Dict[str, Entry], device: torch.device) -> float:
    """Raise unless fast path, timm (and mmdet) agree with our plain eager model on features and logits (eval
    mode); return the worst relative error."""
    x = torch.rand(2, 3, 224, 224, device=device)
    reference_entry = entries[PLAIN]
    with torch.no_grad():
        reference = reference_entry.features(x) + [reference_entry.classify(x)]
        worst = 0.0
        for name in (FAST, TIMM, MMDET):
            if name not in entries:
                continue
            entry = entries[name]
            outputs = entry.features(x) + ([entry.classify(x)] if entry.classify is not None else [])
            for out, ref in zip(outputs, reference):
                error = ((out.float() - ref.float()).abs().max() / ref.float().abs().max()).item()
                worst = max(worst, error)
                if not error <= 1e-4:
                    raise SystemExit(f"{name} differs from {PLAIN}: relative error {error:.2e}; no timing reported")
    return worst
