"""Stand-in for ``detectron2._C`` installed by resnest_backbones' offline set-up (tools/setup_env.sh).

The PyPI repackaging of detectron2 v0.6 ships no C++ sources, so no extension can be built. detectron2 imports
``_C`` at module level in a few files; the standard R-CNN path (torchvision's ``roi_align`` and ``nms``) never calls
it. Anything that does (deformable conv, rotated boxes / ROIAlignRotated, the fast COCO evaluator) fails here with
this message instead of a bare ImportError.
"""


# Queried by detectron2.utils.collect_env (default_setup logs it for every train_net.py run); answering them keeps
# that report working and says plainly that nothing was compiled.
def get_compiler_version():
    return "none (offline fallback: no compiled ops)"


def get_cuda_version():
    return "none (offline fallback: no compiled ops)"


def has_cuda():
    return False


def __getattr__(name):
    raise NotImplementedError(
        f"detectron2._C.{name} is not available: detectron2 was installed by resnest_backbones' offline fallback "
        "(pb1-detectron2==0.6 without compiled ops). Deformable convolution, rotated boxes and "
        "COCOEvaluator(use_fast_impl=True) need the official build: rerun tools/setup_env.sh with network access "
        "to github.com, or use COCOEvaluator(..., use_fast_impl=False)."
    )
