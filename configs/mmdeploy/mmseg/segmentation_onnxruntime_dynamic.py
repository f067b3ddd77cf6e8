# As segmentation_onnxruntime_static.py, for any input height and width (one image per call).
_base_ = ['./segmentation_onnxruntime_static.py']
onnx_config = dict(dynamic_axes=dict(input={2: 'height', 3: 'width'}, output={2: 'height', 3: 'width'}))
