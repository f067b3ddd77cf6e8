"""Models of the detectron2-ResNeSt fork (zhanghang1989/detectron2-ResNeSt) on unpatched detectron2.

The fork patched detectron2's ResNet: its yaml configs add ``MODEL.RESNETS.RADIX``, ``DEEP_STEM``, ``AVD``,
``AVG_DOWN`` and ``BOTTLENECK_WIDTH`` (stock detectron2: ``KeyError: Non-existent config key``) and name the stock
builders (``build_resnet_fpn_backbone``); its checkpoints use detectron2 ResNet names. Here:

- ``translate_fork_config`` rewrites such a config into this plugin's keys, logging every translation, and refuses
  what the plugin would build differently (listed in docs/detectron2.md);
- ``fork_detector_checkpoint`` renames the backbone keys of a fork detector checkpoint to this plugin's names (the
  heads, FPN and meta-architecture are detectron2's own, with the same names), for ``ResNeStCheckpointer``.

Fork facts used here (read from its source at 54ec876, resnet.py / splat.py): ``RADIX > 1`` forces deep stem, avd
and avg_down on whatever the yaml says; ``RADIX 1`` is a plain grouped 3x3 conv (this plugin's radix 0); the deep
stem's width comes from ``DEPTH`` (50: 32, else 64) and ignores ``STEM_OUT_CHANNELS``; the group width is
``int(NUM_GROUPS * WIDTH_PER_GROUP * 2^i * BOTTLENECK_WIDTH / 64) * NUM_GROUPS``, i.e. cardinality ``NUM_GROUPS`` and
base width ``NUM_GROUPS * WIDTH_PER_GROUP * BOTTLENECK_WIDTH / 64``; avd pools after the split-attention conv; the
split-attention reduction is 4 with at least 32 channels; ``"SyncBN"`` meant detectron2's NaiveSyncBatchNorm.
"""
import logging
from typing import Dict, List, Mapping, Optional

from detectron2.config import CfgNode as CN

from ..keymaps import D2FORK, detect_format, fork_to_official, unwrap
from .backbone import sync_bn_keys

logger = logging.getLogger("detectron2.resnest_backbones")

FORK_KEYS = ("RADIX", "DEEP_STEM", "AVD", "AVG_DOWN", "BOTTLENECK_WIDTH")
FORK_DEFAULTS = {"RADIX": 1, "DEEP_STEM": False, "AVD": False, "AVG_DOWN": False, "BOTTLENECK_WIDTH": 64}
BUILDERS = {"build_resnet_fpn_backbone": "build_resnest_fpn_backbone", "build_resnet_backbone": "build_resnest_backbone",
            "build_retinanet_resnet_fpn_backbone": "build_retinanet_resnest_fpn_backbone"}
# DEPTH -> (variant with that depth's blocks and deep-stem width, blocks when no variant has them)
DEPTHS = {50: ("resnest50", None), 101: ("resnest101", None), 152: ("resnest101", [3, 8, 36, 3]),
          200: ("resnest200", None), 269: ("resnest269", None)}
FORK_STEM_WIDTH = {50: 32, 101: 64, 152: 64, 200: 64, 269: 64}
FORK_MARKER = "__detectron2_resnest_fork__"
_TRANSLATED = ("VARIANT", "LAYERS", "RADIX", "CARDINALITY", "BASE_WIDTH", "STEM_WIDTH", "DEEP_STEM", "AVG_DOWN", "AVD",
               "AVD_FIRST", "REDUCTION_FACTOR")


def add_fork_keys(cfg: CN) -> CN:
    """Accept the fork's five ``MODEL.RESNETS`` keys while merging (``None`` = not given); ``translate_fork_config``
    removes them again. Returns ``cfg``."""
    for key in FORK_KEYS:
        cfg.MODEL.RESNETS[key] = None
    return cfg


def _refuse(key: str, value, why: str) -> ValueError:
    return ValueError(f"detectron2-ResNeSt fork config: {key} {value!r} is not supported: {why}")


class _Notes:
    """The translations made, each logged as it is made."""

    def __init__(self, rc: CN):
        self.rc, self.lines = rc, []

    def note(self, text: str) -> None:
        self.lines.append(text)
        logger.warning(f"detectron2-ResNeSt fork config: {text}")

    def put(self, key: str, value, why: str) -> None:
        self.rc[key] = value
        self.note(f"MODEL.RESNEST.{key} = {value!r} ({why})")


def translate_fork_config(cfg: CN) -> List[str]:
    """Rewrite a merged config that uses the fork's keys into this plugin's keys, in place; returns the translations
    (each also logged). A config without fork keys is left as it is (the placeholders are removed)."""
    r = cfg.MODEL.RESNETS
    given = {key: r.pop(key) for key in FORK_KEYS if key in r}
    given = {key: value for key, value in given.items() if value is not None}
    if not given:
        return []
    notes = _Notes(cfg.MODEL.RESNEST)
    clashing = [f"MODEL.RESNEST.{k}" for k in _TRANSLATED if k != "VARIANT" and notes.rc[k] is not None]
    if clashing:
        raise ValueError(f"The config sets both the fork's MODEL.RESNETS.{'/'.join(given)} and this plugin's "
                         f"{', '.join(clashing)}: use one of the two (a fork yaml is translated on load).")
    name = cfg.MODEL.BACKBONE.NAME
    if name not in BUILDERS:
        raise _refuse("MODEL.BACKBONE.NAME", name, f"the fork's ResNeSt is built by {sorted(BUILDERS)}")
    cfg.MODEL.BACKBONE.NAME = BUILDERS[name]
    notes.note(f"MODEL.BACKBONE.NAME {name} -> {BUILDERS[name]}")
    fork = {**FORK_DEFAULTS, **given}
    radix = _translate_blocks(r, fork, given, notes)
    _translate_widths(r, fork, notes)
    _check_unsupported(cfg, fork, radix)
    _note_kept_keys(cfg, notes)
    return notes.lines


def _translate_blocks(r: CN, fork: dict, given: dict, notes: _Notes) -> int:
    """Depth, radix and the ResNet-D switches (the fork forces them on for radix > 1); returns the fork's radix."""
    depth = r.DEPTH
    if depth not in DEPTHS:
        raise _refuse("MODEL.RESNETS.DEPTH", depth, f"the fork's ResNeSt depths are {sorted(DEPTHS)}")
    variant, layers = DEPTHS[depth]
    notes.put("VARIANT", variant, f"MODEL.RESNETS.DEPTH {depth}")
    if layers:
        notes.put("LAYERS", layers, f"MODEL.RESNETS.DEPTH {depth}")
    radix = fork["RADIX"]
    if not isinstance(radix, int) or radix < 1:
        raise _refuse("MODEL.RESNETS.RADIX", radix, "the fork accepts 1 (no split attention) or more")
    notes.put("RADIX", radix if radix > 1 else 0,
              f"MODEL.RESNETS.RADIX {radix}" + ("" if radix > 1 else ": the fork's radix 1 is a plain grouped conv"))
    for key in ("DEEP_STEM", "AVD", "AVG_DOWN"):
        why = f"MODEL.RESNETS.{key} {fork[key]}"
        if radix > 1 and not fork[key]:
            why = f"forced on by the fork because RADIX {radix} > 1" + \
                  (f"; the yaml's {key} {fork[key]} is ignored, as the fork ignores it" if key in given else "")
        notes.put(key, bool(fork[key]) or radix > 1, why)
    notes.put("AVD_FIRST", False, "the fork pools after the split-attention conv")
    notes.put("REDUCTION_FACTOR", 4, "fixed in the fork's split attention")
    return radix


def _translate_widths(r: CN, fork: dict, notes: _Notes) -> None:
    """Cardinality, the per-group base width and the deep stem's width."""
    cardinality = r.NUM_GROUPS
    base_width = cardinality * r.WIDTH_PER_GROUP * fork["BOTTLENECK_WIDTH"] / 64
    if base_width != int(base_width) or base_width < 1:
        raise _refuse("MODEL.RESNETS.BOTTLENECK_WIDTH", fork["BOTTLENECK_WIDTH"],
                      f"NUM_GROUPS * WIDTH_PER_GROUP * BOTTLENECK_WIDTH / 64 = {base_width} must be a positive "
                      "integer (this plugin's base width)")
    notes.put("CARDINALITY", cardinality, f"MODEL.RESNETS.NUM_GROUPS {cardinality}")
    notes.put("BASE_WIDTH", int(base_width), f"NUM_GROUPS {cardinality} x WIDTH_PER_GROUP {r.WIDTH_PER_GROUP} x "
                                             f"BOTTLENECK_WIDTH {fork['BOTTLENECK_WIDTH']} / 64")
    depth = r.DEPTH
    if notes.rc.DEEP_STEM:
        notes.put("STEM_WIDTH", FORK_STEM_WIDTH[depth], f"the fork's deep-stem width for DEPTH {depth}")
        if r.STEM_OUT_CHANNELS != 2 * FORK_STEM_WIDTH[depth]:
            notes.note(f"MODEL.RESNETS.STEM_OUT_CHANNELS {r.STEM_OUT_CHANNELS} ignored, as the fork ignores it with "
                       f"a deep stem (which outputs {2 * FORK_STEM_WIDTH[depth]} channels)")
    elif r.STEM_OUT_CHANNELS != 64:
        raise _refuse("MODEL.RESNETS.STEM_OUT_CHANNELS", r.STEM_OUT_CHANNELS, "this plugin's 7x7 stem has 64 outputs")


def _note_kept_keys(cfg: CN, notes: _Notes) -> None:
    """What the fork's config keeps with another meaning here: deformable convolutions, SyncBN."""
    r = cfg.MODEL.RESNETS
    if any(r.DEFORM_ON_PER_STAGE):
        notes.note(f"MODEL.RESNETS.DEFORM_ON_PER_STAGE {list(r.DEFORM_ON_PER_STAGE)}, DEFORM_MODULATED "
                   f"{r.DEFORM_MODULATED}, DEFORM_NUM_GROUPS {r.DEFORM_NUM_GROUPS} kept: deformable 3x3 convolutions "
                   "as the fork builds them (running them needs a GPU and detectron2's compiled ops)")
    sync = sync_bn_keys(cfg)
    if sync:
        notes.note(f"{', '.join(sync)} SyncBN kept: the fork built detectron2's NaiveSyncBatchNorm for it, this "
                   "detectron2 builds torch.nn.SyncBatchNorm (same weights and statistics, the same evaluation; both "
                   "synchronise batch statistics while training). Multi-process CPU runs need naiveSyncBN.")


def _check_unsupported(cfg: CN, fork: Dict, radix: int) -> None:
    """Refuse fork settings that this plugin would build differently (rather than loading weights into a different
    network)."""
    r = cfg.MODEL.RESNETS
    if r.STRIDE_IN_1X1:
        raise _refuse("MODEL.RESNETS.STRIDE_IN_1X1", True, "the fork's ResNeSt configs set False (with avd, True "
                      "crashes in the fork itself); this plugin strides the 3x3 convolution. Set it False.")
    if r.RES2_OUT_CHANNELS != 256:
        raise _refuse("MODEL.RESNETS.RES2_OUT_CHANNELS", r.RES2_OUT_CHANNELS, "ResNeSt stages output 256..2048")
    if r.RES5_DILATION != 1:
        raise _refuse("MODEL.RESNETS.RES5_DILATION", r.RES5_DILATION,
                      "the fork dilates every res5 block by 2 without contraction and without the stride-1 avd pool "
                      "of res5.0, a layout this plugin does not build (no fork config uses it)")
    if r.NORM == "GN":
        raise _refuse("MODEL.RESNETS.NORM", "GN", "the fork normalises the split-attention vector with 32-group "
                      "GroupNorm, this plugin with a single group (no fork config uses GN)")
    if any(r.DEFORM_ON_PER_STAGE) and fork["BOTTLENECK_WIDTH"] * r.NUM_GROUPS != 64:
        raise _refuse("MODEL.RESNETS.BOTTLENECK_WIDTH", fork["BOTTLENECK_WIDTH"],
                      "with DEFORM_ON_PER_STAGE the fork sizes its offset convolution by WIDTH_PER_GROUP x NUM_GROUPS, "
                      "which differs from the block width unless NUM_GROUPS x BOTTLENECK_WIDTH = 64")


def fork_detector_checkpoint(checkpoint: Mapping, filename: str = "") -> Optional[Dict]:
    """A fork detector checkpoint (backbone keys under ``backbone.bottom_up.`` / ``backbone.`` in fork names, with
    heads) as ``{"model": state}`` in this plugin's names, for detectron2's loading; None for anything else.

    The fork's anchor generator stored its (constant) cell anchors as buffers; detectron2 recomputes them, so
    ``proposal_generator.anchor_generator.cell_anchors.*`` are dropped (and said so).
    """
    try:
        state = unwrap(checkpoint)
        fmt, prefix = detect_format(state)
    except ValueError:
        return None
    if fmt != D2FORK or not prefix or all(key.startswith(prefix) for key in state):
        return None  # not the fork's, or a backbone-only file (loaded strictly into the backbone)
    anchors = [key for key in state if key.startswith("proposal_generator.anchor_generator.cell_anchors.")]
    body = fork_to_official({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
    model = {prefix + key: value for key, value in body.items()}
    model.update({k: v for k, v in state.items() if not k.startswith(prefix) and k not in anchors})
    logger.info(f"{filename or 'MODEL.WEIGHTS'}: a detectron2-ResNeSt fork detector checkpoint; {len(body)} backbone "
                f"keys renamed from the fork's names (under '{prefix}'), {len(model) - len(body)} head keys kept"
                + (f", {len(anchors)} stored cell anchors dropped (detectron2 recomputes them)" if anchors else ""))
    return {"model": model, FORK_MARKER: prefix}


def check_fork_backbone_loaded(incompatible, prefix: str, filename: str = "MODEL.WEIGHTS") -> None:
    """After detectron2 loaded a translated fork checkpoint: every backbone weight must have matched, both ways (a
    missing or extra backbone key means another architecture, which detectron2 would only log)."""
    # BatchNorm step counters are not weights (the fork's FrozenBN stem and res2 have none).
    missing = [k for k in incompatible.missing_keys if k.startswith(prefix) and not k.endswith("num_batches_tracked")]
    extra = [k for k in incompatible.unexpected_keys if k.startswith(prefix)]
    if missing or extra:
        raise ValueError(f"{filename} (detectron2-ResNeSt fork) does not fit the model's backbone: missing "
                         f"{missing[:6]}{' ...' if len(missing) > 6 else ''}, unexpected {extra[:6]}"
                         f"{' ...' if len(extra) > 6 else ''}. Use the fork yaml the checkpoint was trained with.")
