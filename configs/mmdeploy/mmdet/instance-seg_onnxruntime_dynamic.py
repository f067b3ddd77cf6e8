# As instance-seg_onnxruntime_static.py, for any input height and width (one image per call).
_base_ = ['./instance-seg_onnxruntime_static.py']
onnx_config = dict(
    dynamic_axes=dict(
        input={2: 'height', 3: 'width'},
        dets={1: 'num_dets'},
        labels={1: 'num_dets'},
        masks={1: 'num_dets'}))
