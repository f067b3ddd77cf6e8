"""Every published ResNeSt variant as data, and the registry of its official ImageNet checkpoint.

Hyper-parameters and checkpoints are those of the official release (``resnest/torch/models/resnest.py`` and
``ablation.py``); ResNeSt-14/26 were released with the GluonCV models and are published in PyTorch form by timm.
The short hash in each file name is the prefix of the file's SHA-256 (``torch.hub`` convention), checked on download.
"""
from dataclasses import dataclass, field
from typing import Dict, Optional, Sequence, Tuple

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
    """Architecture hyper-parameters of one published model, handed to ``ResNeSt(**arch)``."""
    layers: Sequence[int]
    radix: int
    cardinality: int
    base_width: int
    stem_width: int
    avd_first: bool
    checkpoint: Optional[Checkpoint] = None
    extra: Dict = field(default_factory=dict)

    def arch(self) -> Dict:
        return dict(layers=list(self.layers), radix=self.radix, cardinality=self.cardinality,
                    base_width=self.base_width, stem_width=self.stem_width, deep_stem=True, avg_down=True,
                    avd=True, avd_first=self.avd_first, **self.extra)


def _official(name: str, hash8: str, size: int) -> Checkpoint:
    file_name = f"{name}-{hash8}.pth"
    return Checkpoint(file_name, _OFFICIAL_URL.format(file_name), size)


def _fast(radix: int, cardinality: int, width: int, hash8: str) -> Variant:
    name = f"resnest50_fast_{radix}s{cardinality}x{width}d"
    return Variant([3, 4, 6, 3], radix, cardinality, width, 32, avd_first=True,
                   checkpoint=_official(name, hash8, 224))


VARIANTS: Dict[str, Variant] = {
    "resnest14": Variant([1, 1, 1, 1], 2, 1, 64, 32, False,
                         Checkpoint("gluon_resnest14-9c8fe254.pth", _TIMM_URL.format("gluon_resnest14-9c8fe254.pth"),
                                    224)),
    "resnest26": Variant([2, 2, 2, 2], 2, 1, 64, 32, False,
                         Checkpoint("gluon_resnest26-50eb607c.pth", _TIMM_URL.format("gluon_resnest26-50eb607c.pth"),
                                    224)),
    "resnest50": Variant([3, 4, 6, 3], 2, 1, 64, 32, False, _official("resnest50", "528c19ca", 224)),
    "resnest101": Variant([3, 4, 23, 3], 2, 1, 64, 64, False, _official("resnest101", "22405ba7", 256)),
    "resnest200": Variant([3, 24, 36, 3], 2, 1, 64, 64, False, _official("resnest200", "75117900", 320)),
    "resnest269": Variant([3, 30, 48, 8], 2, 1, 64, 64, False, _official("resnest269", "0cc87c48", 416)),
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
