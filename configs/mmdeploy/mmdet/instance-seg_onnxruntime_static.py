# mmdet instance segmentation (Mask R-CNN, Cascade Mask R-CNN) to ONNX Runtime; input size fixed as in
# detection_onnxruntime_static.py. Outputs dets, labels and masks [1, N, 28, 28]: each detection's mask probabilities
# before pasting (export_postprocess_mask=False); mmdeploy's backend model pastes them into the image and
# thresholds them.
_base_ = ['./detection_onnxruntime_static.py']
onnx_config = dict(output_names=['dets', 'labels', 'masks'])
codebase_config = dict(post_processing=dict(export_postprocess_mask=False))
