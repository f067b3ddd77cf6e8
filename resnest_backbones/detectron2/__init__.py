"""detectron2 adapter: importing it registers the ResNeSt backbones and the ``resnest://`` weights scheme, and
nothing else (the trainer, datasets and quick start are application code in ``resnest_backbones.apps``).

    from detectron2.config import get_cfg
    from resnest_backbones import config_path
    from resnest_backbones.detectron2 import add_resnest_config
    cfg = get_cfg(); add_resnest_config(cfg)
    cfg.merge_from_file(config_path("detectron2/mask_rcnn_s50_fpn_syncbn_range-scale_1x_coco.yaml"))

Registered in ``BACKBONE_REGISTRY``: ``build_resnest_backbone``, ``build_resnest_fpn_backbone``,
``build_retinanet_resnest_fpn_backbone``. See docs/detectron2.md.
"""
try:
    import detectron2  # noqa: F401
    import detectron2.modeling  # noqa: F401
except ImportError as error:
    raise ImportError("resnest_backbones.detectron2 needs detectron2, which is not importable here "
                      f"({error}). Install it with `bash tools/setup_env.sh` (official source when reachable, else "
                      "the offline fallback).") from error

from .backbone import (ResNeStBackbone, build_resnest_backbone, build_resnest_fpn_backbone,  # noqa: E402
                       build_retinanet_resnest_fpn_backbone, resnest_backbone, resnest_kwargs)
from .checkpoint import ResNeStCheckpointer, find_resnest, register_path_handler  # noqa: E402
from .config import add_resnest_config, get_resnest_cfg, load_config  # noqa: E402

register_path_handler()

__all__ = ["add_resnest_config", "get_resnest_cfg", "load_config", "ResNeStBackbone", "build_resnest_backbone",
           "build_resnest_fpn_backbone", "build_retinanet_resnest_fpn_backbone", "resnest_backbone", "resnest_kwargs",
           "ResNeStCheckpointer", "find_resnest", "register_path_handler"]
