"""A trained detector as the deployment tools see it (``tools/export_detectron2.py``,
``tools/eval_onnx_detectron2.py``), from a detectron2 yaml config or a LazyConfig (``.py``): the model in eval mode
with its weights loaded strictly, and its test-time pre-processing (what ``DefaultPredictor`` does before the model:
the channel order and ``ResizeShortestEdge``), which the ONNX runner (``resnest_backbones.onnx_runner``) reproduces.

Weights are loaded strictly because an exported file hides what was not loaded: a checkpoint of another config
(another class count, another variant) raises, naming the keys, instead of detectron2's logged warning.
"""
import logging
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import torch
from detectron2.config import CfgNode as CN
from detectron2.config import instantiate
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data import transforms as T
from detectron2.modeling import build_model
from torch import nn

from ..checkpoint import CheckpointMismatchError
from ..detectron2 import ResNeStCheckpointer
from ..detectron2.checkpoint import _BACKBONE_ONLY
from ..onnx_runner import FORMATS
from .detectron2_data import PREFIX, register_synthetic_datasets, synthetic_root
from .detectron2_lazy_train import load_lazy_config, register_synthetic
from .detectron2_train import Trainer, load_training_config, resolve_config_file

logger = logging.getLogger("detectron2.resnest_backbones")


class StrictCheckpointer(ResNeStCheckpointer):
    """``ResNeStCheckpointer`` that raises when the checkpoint leaves any weight of the model unloaded or holds
    weights the model does not have (detectron2 only logs those), or is a backbone-only checkpoint."""

    def __init__(self, model: nn.Module, weights_key: str):
        super().__init__(model)
        self.weights_key = weights_key
        self.path = ""

    def load(self, path, *args, **kwargs):
        self.path = path  # named in the errors
        return super().load(path, *args, **kwargs)

    def _load_model(self, checkpoint: Dict):
        if _BACKBONE_ONLY in checkpoint:
            raise CheckpointMismatchError(
                f"{self.weights_key} {self.path} holds backbone weights only: the detector's heads would be random. "
                "Set it to a trained detector checkpoint (e.g. OUTPUT_DIR/model_final.pth).")
        incompatible = super()._load_model(checkpoint)
        reshaped = {k for k, _, _ in incompatible.incorrect_shapes}  # detectron2 lists them as missing too
        missing = [k for k in incompatible.missing_keys if not k.endswith("num_batches_tracked") and k not in reshaped]
        problems = [f"{len(keys)} {what} (e.g. {', '.join(map(str, keys[:3]))})" for what, keys in (
            ("missing", missing), ("unexpected", incompatible.unexpected_keys),
            ("of another shape", [f"{k}: checkpoint {tuple(a)} vs model {tuple(b)}"
                                  for k, a, b in incompatible.incorrect_shapes])) if keys]
        if problems:
            raise CheckpointMismatchError(
                f"{self.weights_key} {self.path} does not match the config: weights {'; '.join(problems)}. Pass the "
                "config (and overrides) it was trained with (its classes, variant, head sizes), or a checkpoint of this "
                "config.")
        return incompatible


@dataclass
class Deployment:
    """What the deployment tools need of a config; see the module docstring. ``cfg`` is a yacs ``CfgNode`` or a
    LazyConfig ``DictConfig`` (``lazy``)."""

    cfg: Any
    lazy: bool
    input_format: str
    min_size_test: int
    max_size_test: int
    test_dataset: Optional[str]
    weights: str
    weights_key: str
    device: str

    def build_model(self) -> nn.Module:
        """The detector of the config, untrained, in eval mode on its device."""
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            key = "train.device=cpu" if self.lazy else "MODEL.DEVICE cpu"
            raise RuntimeError(f"The config runs on {self.device!r}, which this machine does not have: add {key}")
        model = instantiate(self.cfg.model).to(self.device) if self.lazy else build_model(self.cfg)
        return model.eval()

    def load_model(self) -> nn.Module:
        """The detector with its weights (``MODEL.WEIGHTS`` / ``train.init_checkpoint``) loaded strictly."""
        if not self.weights:
            raise ValueError(f"{self.weights_key} is empty: the detector would be random. Set it to the trained "
                             f"checkpoint, e.g. {self.weights_key}{'=' if self.lazy else ' '}"
                             "output/<run>/model_final.pth")
        model = self.build_model()
        StrictCheckpointer(model, self.weights_key).load(self.weights)
        return model.eval()

    def class_names(self) -> List[str]:
        """The test dataset's ``thing_classes`` (empty when the dataset is not registered or its files are absent)."""
        if not self.test_dataset:
            return []
        if self.test_dataset not in DatasetCatalog.list():
            logger.warning(f"No class names in the export: the test dataset {self.test_dataset!r} is not registered "
                           "(or not made yet); the runner will name classes by index")
            return []
        metadata = MetadataCatalog.get(self.test_dataset)
        if "thing_classes" not in metadata.as_dict():
            try:
                DatasetCatalog.get(self.test_dataset)  # detectron2's COCO/LVIS loaders set thing_classes on loading
            except FileNotFoundError as error:
                logger.warning(f"No class names in the export: {error}")
        return list(metadata.get("thing_classes", None) or [])

    def runner_metadata(self) -> Dict:
        """What ``onnx_runner.OnnxPredictor`` reads from the ONNX file."""
        return {"input_format": self.input_format, "min_size_test": self.min_size_test,
                "max_size_test": self.max_size_test, "mask_threshold": 0.5,  # detector_postprocess's default
                "class_names": self.class_names()}

    def first_test_image(self) -> str:
        """The first image of the test dataset (the default sample image of the export)."""
        if not self.test_dataset:
            key = "dataloader.test.dataset.names" if self.lazy else "DATASETS.TEST"
            raise ValueError(f"No sample image: pass --sample-image, or set {key}")
        return DatasetCatalog.get(self.test_dataset)[0]["file_name"]

    def test_loader(self):
        """detectron2's test loader of the config (its mapper reads and resizes the images)."""
        if self.lazy:
            return instantiate(self.cfg.dataloader.test)
        from detectron2.data import build_detection_test_loader
        return build_detection_test_loader(self.cfg, self.test_dataset)

    def evaluator(self, output_dir: str):
        """The config's evaluator of the test dataset, writing its files to ``output_dir``."""
        if self.lazy:
            self.cfg.dataloader.evaluator.output_dir = output_dir
            return instantiate(self.cfg.dataloader.evaluator)
        return Trainer.build_evaluator(self.cfg, self.test_dataset, output_dir)


def _test_resize_of_lazy(cfg):
    """``(short edge, max size)`` of a LazyConfig's test mapper, which must resize as ``DefaultPredictor`` does."""
    augmentations = instantiate(cfg.dataloader.test.mapper.get("augmentations", []))
    resize = augmentations[0] if len(augmentations) == 1 else None
    sizes = set(resize.short_edge_length) if isinstance(resize, T.ResizeShortestEdge) else set()
    if len(sizes) != 1:
        raise ValueError("dataloader.test.mapper.augmentations must be one ResizeShortestEdge to one size (what "
                         f"DefaultPredictor and the ONNX runner do), got {augmentations}")
    return int(sizes.pop()), int(resize.max_size)


def _synthetic_root(cfg, lazy: bool) -> Optional[str]:
    """The folder of the synthetic dataset the config uses, or None when it uses none."""
    if lazy:
        if "synthetic" not in cfg:
            return None
        cfg = CN({"DATASETS": CN({"SYNTHETIC": CN({"ROOT": cfg.synthetic.get("root", "")})})})
    elif not any(n.startswith(PREFIX) for n in list(cfg.DATASETS.TRAIN) + list(cfg.DATASETS.TEST)):
        return None
    return synthetic_root(cfg)


def _register(cfg, lazy: bool, make: bool) -> None:
    """Register the synthetic datasets the config uses; make them only if ``make`` (else only when on disk)."""
    root = _synthetic_root(cfg, lazy)
    if root is not None and (make or os.path.isdir(root)):
        (register_synthetic if lazy else register_synthetic_datasets)(cfg)


def _lazy(config_file: str, opts, make: bool) -> Deployment:
    cfg = load_lazy_config(config_file, opts)
    _register(cfg, True, make)
    short, longest = _test_resize_of_lazy(cfg)
    names = cfg.dataloader.test.dataset.names if "test" in cfg.dataloader else None
    names = [names] if isinstance(names, str) else list(names or [])
    return Deployment(cfg, True, cfg.dataloader.test.mapper.image_format, short, longest,
                      names[0] if names else None, cfg.train.init_checkpoint, "train.init_checkpoint",
                      cfg.train.device)


def _yacs(config_file: str, opts, make: bool) -> Deployment:
    cfg = load_training_config(config_file, opts, freeze=False)
    _register(cfg, False, make)
    cfg.freeze()
    return Deployment(cfg, False, cfg.INPUT.FORMAT, cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST,
                      cfg.DATASETS.TEST[0] if cfg.DATASETS.TEST else None, cfg.MODEL.WEIGHTS, "MODEL.WEIGHTS",
                      cfg.MODEL.DEVICE)


def load_deployment(config_file: str, opts=(), make_datasets: bool = True) -> Deployment:
    """The ``Deployment`` of a yaml config (``KEY VALUE`` overrides) or a LazyConfig ``.py`` (``key=value``), as
    a path or a shipped config name. Registers the synthetic datasets the config uses, making them first (the quick
    start's 900 images) only with ``make_datasets``."""
    config_file = resolve_config_file(config_file)
    load = _lazy if os.path.splitext(config_file)[1] == ".py" else _yacs
    deployment = load(config_file, list(opts), make_datasets)
    if deployment.input_format not in FORMATS:
        key = "dataloader.test.mapper.image_format" if deployment.lazy else "INPUT.FORMAT"
        raise ValueError(f"{key} is {deployment.input_format!r}: deployment supports {FORMATS} (as DefaultPredictor)")
    return deployment
