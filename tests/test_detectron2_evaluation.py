"""The synthetic dataset through detectron2's own COCO/LVIS loaders and evaluators (real pycocotools and lvis).

Perfect predictions (the ground truth itself) must score AP 100; perturbed ones must score less.
"""
import json
import os

import numpy as np
import pytest
import torch

import resnest_backbones.detectron2 as rd2  # noqa: F401  (fails the module if detectron2 is missing)
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.detection_utils import annotations_to_instances
from detectron2.evaluation import COCOEvaluator, LVISEvaluator
from detectron2.structures import BoxMode

from resnest_backbones.datasets import make_synthetic_dataset
from resnest_backbones.apps.detectron2_data import register_synthetic_datasets
from resnest_backbones.apps.detectron2_train import Trainer, add_training_config

# Written out, not imported from the dataset maker: the quick-start configs of all three frameworks name these.
CLASSES = ["circle", "square", "triangle"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    cfg = add_training_config(rd2.get_resnest_cfg())
    cfg.DATASETS.SYNTHETIC.ROOT = str(root)
    cfg.DATASETS.SYNTHETIC.NUM_TRAIN, cfg.DATASETS.SYNTHETIC.NUM_VAL, cfg.DATASETS.SYNTHETIC.IMAGE_SIZE = 12, 8, 128
    cfg.DATASETS.TRAIN, cfg.DATASETS.TEST = ("synthetic_shapes_train",), ("synthetic_shapes_val",)
    cfg.OUTPUT_DIR = str(root / "out")
    paths = register_synthetic_datasets(cfg)
    return cfg, paths


def test_dataset_files_follow_the_formats(dataset):
    _, paths = dataset
    coco = json.load(open(paths["coco_val"]))
    lvis = json.load(open(paths["lvis_val"]))
    assert [c["name"] for c in coco["categories"]] == CLASSES
    assert len(coco["images"]) == 8 and len(coco["annotations"]) >= 8
    for image in lvis["images"]:
        assert {"coco_url", "file_name", "neg_category_ids", "not_exhaustive_category_ids"} <= set(image)
        present = {a["category_id"] for a in lvis["annotations"] if a["image_id"] == image["id"]}
        assert set(image["neg_category_ids"]) == {1, 2, 3} - present
    for category in lvis["categories"]:
        assert category["frequency"] in "rcf" and category["image_count"] > 0 and category["instance_count"] > 0
    train = json.load(open(paths["coco_train"]))
    assert train["annotations"][0]["bbox"] != coco["annotations"][0]["bbox"], "val must be a different draw"


def test_dataset_is_reproducible_and_guarded(tmp_path):
    a = make_synthetic_dataset(tmp_path / "a", 3, 2, 64, seed=5)
    b = make_synthetic_dataset(tmp_path / "b", 3, 2, 64, seed=5)
    assert open(a["coco_train"]).read() == open(b["coco_train"]).read()
    with pytest.raises(FileExistsError, match="overwrite"):
        make_synthetic_dataset(tmp_path / "a", 3, 2, 64, seed=6)


def test_loaders_see_images_and_masks(dataset):
    for name in ("synthetic_shapes_val", "synthetic_shapes_lvis_val"):
        records = DatasetCatalog.get(name)
        assert len(records) == 8
        assert MetadataCatalog.get(name).thing_classes == CLASSES
        first = records[0]
        assert first["file_name"].endswith("val/000001.png")
        assert os.path.exists(first["file_name"])
        assert first["annotations"] and all(len(a["segmentation"][0]) >= 6 for a in first["annotations"])
    assert MetadataCatalog.get("synthetic_shapes_lvis_val").evaluator_type == "lvis"
    assert MetadataCatalog.get("synthetic_shapes_val").evaluator_type == "coco"


def _ground_truth_predictions(records, shift=0.0, drop_every=0):
    """Predictions equal to the annotations (scores 1), optionally shifted by ``shift`` px / with objects dropped."""
    outputs = []
    for record in records:
        annotations = [dict(a, bbox_mode=BoxMode.XYWH_ABS) for a in record["annotations"]]
        if drop_every:
            annotations = annotations[::drop_every]
        size = (record["height"], record["width"])
        gt = annotations_to_instances(annotations, size, mask_format="bitmask")
        instances = gt.__class__(size)
        boxes = gt.gt_boxes.tensor.clone() + shift
        instances.pred_boxes = gt.gt_boxes.__class__(boxes)
        instances.scores = torch.ones(len(gt))
        instances.pred_classes = gt.gt_classes
        instances.pred_masks = torch.roll(gt.gt_masks.tensor, shifts=int(shift), dims=2)
        outputs.append(({"image_id": record["image_id"], "height": size[0], "width": size[1]},
                        {"instances": instances}))
    return outputs


def _evaluate(evaluator, predictions):
    evaluator.reset()
    for inputs, outputs in predictions:
        evaluator.process([inputs], [outputs])
    return evaluator.evaluate()


@pytest.mark.parametrize("name,kind", [("synthetic_shapes_val", COCOEvaluator),
                                       ("synthetic_shapes_lvis_val", LVISEvaluator)])
def test_perfect_predictions_score_100_and_perturbed_less(dataset, tmp_path, name, kind):
    cfg, _ = dataset
    evaluator = Trainer.build_evaluator(cfg, name, output_folder=str(tmp_path))
    assert isinstance(evaluator, kind)
    records = DatasetCatalog.get(name)
    perfect = _evaluate(evaluator, _ground_truth_predictions(records))
    for task in ("bbox", "segm"):
        assert perfect[task]["AP"] == pytest.approx(100.0, abs=1e-6), (task, perfect[task])
    shifted = _evaluate(evaluator, _ground_truth_predictions(records, shift=4.0))
    dropped = _evaluate(evaluator, _ground_truth_predictions(records, drop_every=2))
    for task in ("bbox", "segm"):
        assert 0.0 < shifted[task]["AP"] < 95.0, (task, shifted[task]["AP"])
        assert 0.0 < dropped[task]["AP"] < 90.0, (task, dropped[task]["AP"])
    assert not np.isnan(perfect["bbox"]["AP50"])
