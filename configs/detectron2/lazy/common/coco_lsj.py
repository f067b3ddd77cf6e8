# COCO 2017 data loaders with large-scale jitter (LSJ), as detectron2's new_baselines: the image is resized to
# 0.1-2.0x of 1024x1024 (aspect kept), then randomly cropped / padded to 1024x1024 and flipped. RGB input (the
# ResNeSt weights' order). Evaluation: shorter side 800 (at most 1333), detectron2's COCOEvaluator.
from omegaconf import OmegaConf

import detectron2.data.transforms as T
from detectron2.config import LazyCall as L
from detectron2.data import (DatasetMapper, build_detection_test_loader, build_detection_train_loader,
                             get_detection_dataset_dicts)
from detectron2.evaluation import COCOEvaluator

IMAGE_SIZE = 1024

dataloader = OmegaConf.create()
dataloader.train = L(build_detection_train_loader)(
    dataset=L(get_detection_dataset_dicts)(names="coco_2017_train"),
    mapper=L(DatasetMapper)(
        is_train=True,
        augmentations=[
            L(T.ResizeScale)(min_scale=0.1, max_scale=2.0, target_height=IMAGE_SIZE, target_width=IMAGE_SIZE),
            L(T.FixedSizeCrop)(crop_size=(IMAGE_SIZE, IMAGE_SIZE)),
            L(T.RandomFlip)(horizontal=True),
        ],
        image_format="RGB",
        use_instance_mask=True,
        recompute_boxes=True,  # boxes from the cropped masks
    ),
    total_batch_size=64,
    num_workers=4,
)
dataloader.test = L(build_detection_test_loader)(
    dataset=L(get_detection_dataset_dicts)(names="coco_2017_val", filter_empty=False),
    mapper=L(DatasetMapper)(
        is_train=False,
        augmentations=[L(T.ResizeShortestEdge)(short_edge_length=800, max_size=1333)],
        image_format="${...train.mapper.image_format}",
    ),
    num_workers=4,
)
# use_fast_impl=False: pycocotools' own evaluation, which every detectron2 build has (the offline fallback has no
# compiled evaluator); set it True with a compiled detectron2 for a faster evaluation.
dataloader.evaluator = L(COCOEvaluator)(dataset_name="${..test.dataset.names}", use_fast_impl=False,
                                        output_dir="${...train.output_dir}/inference")  # predictions json
