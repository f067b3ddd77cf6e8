"""The quick start's drawings: ground truth (left) beside the predictions above the threshold (right), one colour per
class, a legend on top. Real detectron2 Visualizer and dataset loaders, CPU."""
import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog
from detectron2.data.detection_utils import annotations_to_instances, read_image
from detectron2.structures import Instances
from detectron2.utils.visualizer import Visualizer

import resnest_backbones.detectron2 as rd2
from resnest_backbones.apps.detectron2_data import register_synthetic_datasets
from resnest_backbones.apps.detectron2_train import add_training_config
from resnest_backbones.apps.detectron2_visualize import SEPARATOR, draw_side_by_side, drawing_metadata

SCALE = 2.0


@pytest.fixture(scope="module")
def record(tmp_path_factory):
    cfg = add_training_config(rd2.get_resnest_cfg())
    cfg.DATASETS.SYNTHETIC.ROOT = str(tmp_path_factory.mktemp("shapes"))
    cfg.DATASETS.SYNTHETIC.NUM_TRAIN, cfg.DATASETS.SYNTHETIC.NUM_VAL, cfg.DATASETS.SYNTHETIC.IMAGE_SIZE = 2, 3, 96
    cfg.DATASETS.TRAIN, cfg.DATASETS.TEST = ("synthetic_shapes_train",), ("synthetic_shapes_val",)
    register_synthetic_datasets(cfg)
    record = next(r for r in DatasetCatalog.get("synthetic_shapes_val") if r["annotations"])
    return record, read_image(record["file_name"], format="RGB")


def _predictions(record, image, score):
    """The ground truth itself as predictions, all with ``score``."""
    truth = annotations_to_instances(record["annotations"], image.shape[:2], mask_format="bitmask")
    return Instances(image.shape[:2], pred_boxes=truth.gt_boxes, pred_classes=truth.gt_classes,
                     pred_masks=truth.gt_masks.tensor, scores=torch.full((len(truth),), score))


def _panels(drawing, image):
    height, width = int(round(image.shape[0] * SCALE)), int(round(image.shape[1] * SCALE))
    assert drawing.shape[1] == 2 * width + SEPARATOR and drawing.shape[0] > height  # legend above the panels
    body = drawing[-height:]
    return body[:, :width], body[:, width + SEPARATOR:]


def test_truth_left_predictions_above_threshold_right(record):
    record, image = record
    metadata = drawing_metadata("synthetic_shapes_val")
    plain = Visualizer(image, metadata, scale=SCALE).output.get_image()  # the image, nothing drawn
    confident = draw_side_by_side(image, record, _predictions(record, image, 0.9), metadata, 0.5, SCALE)
    doubtful = draw_side_by_side(image, record, _predictions(record, image, 0.3), metadata, 0.5, SCALE)
    truth, shown = _panels(confident, image)
    truth_again, hidden = _panels(doubtful, image)
    assert not np.array_equal(truth, plain) and np.array_equal(truth, truth_again)  # the annotations, both times
    assert not np.array_equal(shown, plain)  # predictions at 0.9 are drawn
    assert np.array_equal(hidden, plain)  # predictions at 0.3 are below 0.5: nothing drawn
    # The legend differs with the number of predictions shown, and not with anything else.
    assert not np.array_equal(confident[:-truth.shape[0]], doubtful[:-truth.shape[0]])


def test_one_colour_per_class(record):
    metadata = drawing_metadata("synthetic_shapes_val")
    assert metadata.thing_classes == ["circle", "square", "triangle"]
    assert len(set(metadata.thing_colors)) == 3
