"""Every published ResNeSt variant as data, and the registry of its official ImageNet checkpoint.

Hyper-parameters and checkpoints are those of the official release (``resnest/torch/models/resnest.py`` and
``ablation.py``); ResNeSt-14/26 were released with the GluonCV models and are published in PyTorch form by timm.
The short hash in each file name is the prefix of the file's SHA-256 (``torch.hub`` convention), checked on download.
"""
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_OFFICIAL_URL = "https://github.com/zhanghang1989/ResNeSt/releases/download/weights_step1/{}"
_TIMM_URL = "https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-weights/{}"


@dataclass(frozen=True)
class Checkpoint:
    """One published ImageNet checkpoint (official/timm key format, 1000-class head)."""
    file_name: str
    url: str
    input_size: int
    crop_pct: float = 0.875
    mean: Tuple[float, float, float] = IMAGENET_MEAN
    std: Tuple[float, float, float] = IMAGENET_STD
    num_classes: int = 1000

    @property
    def hash_prefix(self) -> str:
        return self.file_name.rsplit("-", 1)[-1].split(".")[0]


@dataclass(frozen=True)
class Variant:
    """One published model: ``ResNeSt`` keyword arguments (``arch``) and its ImageNet checkpoint."""
    arch: Dict
    checkpoint: Optional[Checkpoint] = None

    def kwargs(self) -> Dict:
        """A fresh copy of the architecture arguments, for ``ResNeSt(**variant.kwargs())``."""
        return {key: list(value) if isinstance(value, (list, tuple)) else value for key, value in self.arch.items()}


def _official(name: str, hash8: str, size: int) -> Checkpoint:
    file_name = f"{name}-{hash8}.pth"
    return Checkpoint(file_name, _OFFICIAL_URL.format(file_name), size)


def _timm(file_name: str, size: int) -> Checkpoint:
    return Checkpoint(file_name, _TIMM_URL.format(file_name), size)


# Every ResNeSt is a ResNet-D (deep stem, average-pool shortcut, avd); the variants differ in the fields below.
_RESNEST = dict(deep_stem=True, avg_down=True, avd=True)
_DEPTHS = dict(radix=2, cardinality=1, base_width=64, avd_first=False, **_RESNEST)


def _fast(radix: int, cardinality: int, base_width: int, hash8: str) -> Variant:
    """The ablation models of the paper's Table 2 (``resnest50_fast_<radix>s<cardinality>x<width>d``)."""
    arch = dict(layers=[3, 4, 6, 3], stem_width=32, radix=radix, cardinality=cardinality, base_width=base_width,
                avd_first=True, **_RESNEST)
    return Variant(arch, _official(f"resnest50_fast_{radix}s{cardinality}x{base_width}d", hash8, 224))


VARIANTS: Dict[str, Variant] = {
    "resnest14": Variant(dict(layers=[1, 1, 1, 1], stem_width=32, **_DEPTHS),
                         _timm("gluon_resnest14-9c8fe254.pth", 224)),
    "resnest26": Variant(dict(layers=[2, 2, 2, 2], stem_width=32, **_DEPTHS),
                         _timm("gluon_resnest26-50eb607c.pth", 224)),
    "resnest50": Variant(dict(layers=[3, 4, 6, 3], stem_width=32, **_DEPTHS), _official("resnest50", "528c19ca", 224)),
    "resnest101": Variant(dict(layers=[3, 4, 23, 3], stem_width=64, **_DEPTHS),
                          _official("resnest101", "22405ba7", 256)),
    "resnest200": Variant(dict(layers=[3, 24, 36, 3], stem_width=64, **_DEPTHS),
                          _official("resnest200", "75117900", 320)),
    "resnest269": Variant(dict(layers=[3, 30, 48, 8], stem_width=64, **_DEPTHS),
                          _official("resnest269", "0cc87c48", 416)),
    "resnest50_fast_1s1x64d": _fast(1, 1, 64, "d8fbf808"),
    "resnest50_fast_2s1x64d": _fast(2, 1, 64, "44938639"),
    "resnest50_fast_4s1x64d": _fast(4, 1, 64, "f74f3fc3"),
    "resnest50_fast_1s2x40d": _fast(1, 2, 40, "32830b84"),
    "resnest50_fast_2s2x40d": _fast(2, 2, 40, "9d126481"),
    "resnest50_fast_4s2x40d": _fast(4, 2, 40, "41d14ed0"),
    "resnest50_fast_1s4x24d": _fast(1, 4, 24, "d4a4f76f"),
}


def get_variant(name: str) -> Variant:
    if name not in VARIANTS:
        import difflib
        close = difflib.get_close_matches(name, VARIANTS, n=3)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise KeyError(f"Unknown ResNeSt variant {name!r}.{hint} Known variants: {', '.join(VARIANTS)} "
                       "(resnest_backbones.list_models()).")
    return VARIANTS[name]
