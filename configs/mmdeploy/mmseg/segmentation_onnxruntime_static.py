# mmseg segmentors (DeepLabV3, PSPNet, DeepLabV3+, 'whole' test mode) to ONNX Runtime, one image per call, input
# size fixed to the size of the export image after the test pipeline. Output: the logits [1, C, H, W] at the input
# size (with_argmax=False), so that the prediction is made by mmseg's own post-processing (logits resized to the
# original image, then argmax), as in PyTorch.
_base_ = ['../_base_/onnxruntime.py']
codebase_config = dict(type='mmseg', task='Segmentation', with_argmax=False)
