"""Registration of the synthetic shapes dataset with detectron2's own COCO and LVIS loaders.

Names: ``synthetic_shapes_{train,val}`` (COCO format, ``COCOEvaluator``) and ``synthetic_shapes_lvis_{train,val}``
(LVIS v1 format, ``LVISEvaluator``). The data is made on first use (``resnest_backbones.datasets``).
"""
import json
import os
from typing import Dict, List

from detectron2.config import CfgNode as CN
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_lvis_json, register_coco_instances, register_lvis_instances

from ..datasets import make_synthetic_dataset
from ..datasets.manifest import DatasetChangedError, UnsafeRecordError

PREFIX = "synthetic_shapes"
# make_synthetic_dataset's arguments -> DATASETS.SYNTHETIC keys
KEYS = {"num_train": "NUM_TRAIN", "num_val": "NUM_VAL", "image_size": "IMAGE_SIZE", "seed": "SEED"}
SPLITS = {f"{PREFIX}_train": ("coco", "train"), f"{PREFIX}_val": ("coco", "val"),
          f"{PREFIX}_lvis_train": ("lvis", "train"), f"{PREFIX}_lvis_val": ("lvis", "val")}


def add_synthetic_config(cfg: CN) -> CN:
    """Add the ``DATASETS.SYNTHETIC`` keys (in place, idempotent). Returns ``cfg``."""
    if "SYNTHETIC" in cfg.DATASETS:
        return cfg
    cfg.DATASETS.SYNTHETIC = CN()
    _d = cfg.DATASETS.SYNTHETIC
    _d.ROOT = ""  # folder of the synthetic shapes dataset; "": $DETECTRON2_DATASETS/synthetic_shapes (./datasets)
    _d.NUM_TRAIN = 800  # training images (made on first use by resnest_backbones.datasets.make_synthetic_dataset)
    _d.NUM_VAL = 100  # held-out images
    _d.IMAGE_SIZE = 256  # side of the square images
    _d.SEED = 0  # random seed of the dataset
    return cfg


def synthetic_root(cfg) -> str:
    """``DATASETS.SYNTHETIC.ROOT``, or ``$DETECTRON2_DATASETS/synthetic_shapes`` (detectron2's convention)."""
    if cfg.DATASETS.SYNTHETIC.ROOT:
        return os.path.abspath(os.path.expanduser(cfg.DATASETS.SYNTHETIC.ROOT))
    return os.path.abspath(os.path.join(os.environ.get("DETECTRON2_DATASETS", "datasets"), PREFIX))


def _category_names(json_file: str) -> List[str]:
    with open(json_file) as f:
        categories = json.load(f)["categories"]
    return [c["name"] for c in sorted(categories, key=lambda c: c["id"])]


def _replace(name: str) -> None:
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def _register_lvis(name: str, json_file: str, image_root: str) -> None:
    # detectron2 v0.6's register_lvis_instances asks get_lvis_instances_meta(name) for hard-coded LVIS v0.5/v1
    # categories, which a custom LVIS-format dataset does not have. Register with it (metadata, evaluator type), then
    # point the catalog at the same loader without the built-in category lookup; the class names come from the json.
    register_lvis_instances(name, {"thing_classes": _category_names(json_file)}, json_file, image_root)
    DatasetCatalog.remove(name)
    DatasetCatalog.register(name, lambda: load_lvis_json(json_file, image_root, None))


def _changed_message(error: DatasetChangedError, synthetic) -> str:
    keys = ", ".join(f"DATASETS.SYNTHETIC.{KEYS[name]} {after!r} (that folder has {before!r})" if name in KEYS else
                     f"{name} {before!r} -> {after!r}" for name, before, after in error.changes)
    command = (f"python tools/make_synthetic_dataset.py {error.root} --num-train {synthetic.NUM_TRAIN} --num-val "
               f"{synthetic.NUM_VAL} --image-size {synthetic.IMAGE_SIZE} --seed {synthetic.SEED} --overwrite")
    return (f"DATASETS.SYNTHETIC.ROOT {error.root} holds the synthetic dataset made with other settings: {keys}. Set "
            "those keys to the folder's values, or DATASETS.SYNTHETIC.ROOT to a new folder. To replace that dataset "
            f"(only its {error.recorded} recorded files are deleted): {command}")


def register_synthetic_datasets(cfg) -> Dict[str, str]:
    """Make (if absent) and register the synthetic datasets when the config uses them; returns the dataset paths
    (empty when the config uses none)."""
    used = [n for n in list(cfg.DATASETS.TRAIN) + list(cfg.DATASETS.TEST) if n.startswith(PREFIX)]
    unknown = [n for n in used if n not in SPLITS]
    if unknown:
        raise KeyError(f"DATASETS.TRAIN/TEST name {unknown[0]!r} is not a synthetic split; use one of {list(SPLITS)}")
    if not used:
        return {}
    s = cfg.DATASETS.SYNTHETIC
    try:
        paths = make_synthetic_dataset(synthetic_root(cfg), s.NUM_TRAIN, s.NUM_VAL, s.IMAGE_SIZE, seed=s.SEED)
    except DatasetChangedError as error:  # phrased in config keys: train_net.py has no --overwrite
        raise FileExistsError(_changed_message(error, s)) from None
    except NotADirectoryError:
        raise NotADirectoryError(f"DATASETS.SYNTHETIC.ROOT {synthetic_root(cfg)} is a file, not a folder: set "
                                 "DATASETS.SYNTHETIC.ROOT to a folder (the dataset is made there on first use).") \
            from None
    except UnsafeRecordError as error:
        raise UnsafeRecordError(f"DATASETS.SYNTHETIC.ROOT: {error}") from None
    except FileExistsError as error:  # the maker never touches files it did not make (nor, here, its other datasets)
        raise FileExistsError(f"DATASETS.SYNTHETIC.ROOT: {error} With detectron2: set DATASETS.SYNTHETIC.ROOT to a "
                              "new or empty folder, or set the DATASETS.SYNTHETIC keys to the ones that folder was "
                              "made with.") from None
    except ValueError as error:
        raise ValueError(f"DATASETS.SYNTHETIC (NUM_TRAIN {s.NUM_TRAIN}, NUM_VAL {s.NUM_VAL}, IMAGE_SIZE "
                         f"{s.IMAGE_SIZE}): {error}") from None
    for name, (fmt, split) in SPLITS.items():
        _replace(name)
        if fmt == "coco":
            register_coco_instances(name, {}, paths[f"coco_{split}"], paths["image_root"])
        else:
            # load_lvis_json joins image_root + "<split>/<file>" (string concatenation): keep the trailing slash.
            _register_lvis(name, paths[f"lvis_{split}"], os.path.join(paths["image_root"], ""))
    return paths
