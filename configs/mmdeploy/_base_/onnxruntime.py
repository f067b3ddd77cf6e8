# ONNX for ONNX Runtime (CPU build), mmdeploy's deploy-config layout. Read by tools/deploy_openmmlab.py and
# tools/test_openmmlab_onnx.py (and by mmdeploy's own APIs). Opset 16: the first with RoiAlign's
# coordinate_transformation_mode, so mmcv's RoIAlign(aligned=True) of the R-CNN heads exports exactly.
# optimize=False: mmdeploy's graph optimizer is a compiled extension that its PyPI wheel does not ship.
# input_shape=None: the export traces the image given to the tool after the model's test pipeline.
onnx_config = dict(
    type='onnx',
    export_params=True,
    keep_initializers_as_inputs=False,
    opset_version=16,
    save_file='end2end.onnx',
    input_names=['input'],
    output_names=['output'],
    input_shape=None,
    optimize=False)
backend_config = dict(type='onnxruntime')
