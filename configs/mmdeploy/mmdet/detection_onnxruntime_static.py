# mmdet detectors (Faster / Cascade R-CNN, ...) to ONNX Runtime, one image per call, input size fixed to the size of
# the export image after the test pipeline (every test image must have it: the quick starts' 128x128 images do).
# Outputs: dets [1, N, 5] (x1, y1, x2, y2, score in the network's input coordinates) and labels [1, N].
# For the R-CNN heads the project's rewriters (resnest_backbones/apps/mmdeploy_rewriters.py) compute mmdet's own
# post-processing from the model's test_cfg; post_processing below is read by mmdeploy's rewriters of other heads
# (single-stage detectors).
_base_ = ['../_base_/onnxruntime.py']
onnx_config = dict(output_names=['dets', 'labels'])
codebase_config = dict(
    type='mmdet',
    task='ObjectDetection',
    model_type='end2end',
    post_processing=dict(
        score_threshold=0.05,
        confidence_threshold=0.005,
        iou_threshold=0.5,
        max_output_boxes_per_class=200,
        pre_top_k=5000,
        keep_top_k=100,
        background_label_id=-1))
