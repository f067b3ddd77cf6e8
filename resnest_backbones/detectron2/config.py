"""The plugin's config keys, and config loading with errors that say what to change.

``add_resnest_config(cfg)`` only ADDS keys; no detectron2 default is changed. Architecture keys under
``MODEL.RESNEST`` default to ``None``, meaning "as the published variant ``MODEL.RESNEST.VARIANT`` has it".
Generic detectron2 keys keep their meaning: ``MODEL.BACKBONE.FREEZE_AT``, ``MODEL.RESNETS.NORM``,
``MODEL.RESNETS.OUT_FEATURES`` and ``MODEL.RESNETS.RES5_DILATION`` configure the ResNeSt backbone too.
"""
import difflib
from typing import Callable, Iterator, Optional, Sequence

from detectron2.config import CfgNode as CN
from detectron2.config import get_cfg

from .fork import FORK_KEYS, add_fork_keys, translate_fork_config


def add_resnest_config(cfg: CN) -> CN:
    """Add the ``MODEL.RESNEST`` keys (in place, idempotent). Returns ``cfg``."""
    if "RESNEST" in cfg.MODEL:
        return cfg
    cfg.MODEL.RESNEST = CN()
    _c = cfg.MODEL.RESNEST
    _c.VARIANT = "resnest50"  # published variant giving the architecture: resnest_backbones.list_models()
    _c.LAYERS = None  # blocks in res2..res5, e.g. [3, 4, 6, 3]; None: the variant's
    _c.RADIX = None  # splits per cardinal group (paper's R); None: the variant's
    _c.CARDINALITY = None  # cardinal groups (paper's K); None: the variant's
    _c.BASE_WIDTH = None  # bottleneck width per group in res2; None: the variant's
    _c.STEM_WIDTH = None  # width of the deep stem's first two 3x3 convs; None: the variant's
    _c.DEEP_STEM = None  # three 3x3 stem convs instead of one 7x7; None: the variant's
    _c.AVG_DOWN = None  # average-pool + 1x1 conv on strided shortcuts; None: the variant's
    _c.AVD = None  # average-pool downsampling inside strided blocks; None: the variant's
    _c.AVD_FIRST = None  # that pool before the split-attention conv ("fast" variants); None: the variant's
    _c.REDUCTION_FACTOR = None  # split-attention reduction of the attention width; None: the variant's
    _c.DILATED_LAYOUT = "official"  # first block of a dilated res5 (RES5_DILATION 2): official | mmseg | timm
    _c.DROP_BLOCK_PROB = 0.0  # DropBlock probability in res4/res5 during training (0: off)
    _c.LAST_GAMMA = False  # zero-init the last BN of each block (only matters when training from scratch)
    _c.WITH_CP = False  # gradient checkpointing of every block: less memory, one extra forward
    # Train with resnest_backbones.memory_efficient (exact gradients, less saved memory; opt-in, see
    # docs/benchmarks.md for its cost on CPU).
    _c.MEMORY_EFFICIENT = False
    # In eval mode (tests, DefaultPredictor), run the backbone fused (resnest_backbones.fast_inference): BN folded
    # into the convs, the same outputs up to float rounding. Training is unchanged.
    _c.FAST_INFERENCE = False

    return cfg


def get_resnest_cfg() -> CN:
    """detectron2's default config plus this plugin's keys."""
    return add_resnest_config(get_cfg())


def _flat_keys(node: CN, prefix: str = "") -> Iterator[str]:
    for key, value in node.items():
        if isinstance(value, CN):
            yield from _flat_keys(value, prefix + key + ".")
        else:
            yield prefix + key


def _missing_key(error: Exception) -> Optional[str]:
    text = str(error.args[0]) if error.args else ""
    # yacs says "Non-existent config key: K" for files and "Non-existent key: K" for KEY VALUE overrides.
    for marker in ("Non-existent config key: ", "Non-existent key: "):
        if marker in text:
            return text.split(marker, 1)[1].strip()
    return None


def explain_config_error(cfg: CN, error: Exception) -> Exception:
    """Turn yacs' "Non-existent (config) key" into a KeyError naming the closest existing key."""
    key = _missing_key(error)
    if key is None:
        return error
    close = difflib.get_close_matches(key, list(_flat_keys(cfg)), n=3, cutoff=0.6)
    hint = f" Did you mean {' or '.join(close)}?" if close else ""
    if key.startswith("MODEL.RESNEST") and "RESNEST" not in cfg.MODEL:
        hint += " MODEL.RESNEST keys exist only after resnest_backbones.detectron2.add_resnest_config(cfg)."
    return KeyError(f"Unknown config key {key!r}.{hint} (Keys of the ResNeSt plugin: "
                    "resnest_backbones/detectron2/config.py; detectron2's: detectron2/config/defaults.py.)")


def load_config(config_file: str = "", opts: Sequence[str] = (), freeze: bool = True,
                add_configs: Sequence[Callable[[CN], object]] = ()) -> CN:
    """``get_cfg()`` + ``add_resnest_config`` (+ each of ``add_configs``) + the file + ``KEY VALUE`` overrides, with
    errors that name the closest existing key.

    A config of the detectron2-ResNeSt fork (its ``MODEL.RESNETS.RADIX`` / ``DEEP_STEM`` / ``AVD`` / ``AVG_DOWN`` /
    ``BOTTLENECK_WIDTH`` keys, in the file or the overrides) is translated into this plugin's keys, each translation
    logged (``resnest_backbones.detectron2.fork``); the result holds only this plugin's and detectron2's keys.
    """
    cfg = get_resnest_cfg()
    for add_config in add_configs:
        add_config(cfg)
    add_fork_keys(cfg)
    try:
        if config_file:
            cfg.merge_from_file(config_file)
        cfg.merge_from_list(list(opts))
    except (KeyError, AssertionError) as error:
        for key in FORK_KEYS:  # placeholders, not keys to suggest
            cfg.MODEL.RESNETS.pop(key, None)
        raise explain_config_error(cfg, error) from None
    translate_fork_config(cfg)
    if freeze:
        cfg.freeze()
    return cfg
