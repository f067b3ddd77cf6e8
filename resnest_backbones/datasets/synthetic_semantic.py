"""Synthetic semantic-segmentation datasets in the real ADE20K and Cityscapes on-disk layouts.

Used by the MMSegmentation quick starts and tests, so that mmseg's own ``ADE20KDataset`` / ``CityscapesDataset`` and
``IoUMetric`` run unchanged with no download. Scenes are learnable: each class has its own colour and stripe
texture (jittered per image, with pixel noise); a background class fills the image and 2-5 ellipses and polygons of
other classes lie on top. Some regions belong to no class (ADE's "other", Cityscapes' ignore) to exercise ignoring.
Train and val come from independent random streams.

Classes are the first ``num_classes`` classes of the real dataset, in its order, so that a config passing
``metainfo=dict(classes=...)`` to the real dataset class maps labels one to one (mmseg accepts a subset of a
dataset's classes and remaps labels by name).

API::

    make_ade20k_layout(root, num_train=48, num_val=12, image_size=(128, 128), num_classes=5, seed=0)
    make_cityscapes_layout(root, num_train=48, num_val=12, image_size=(128, 256), num_classes=5, seed=0)

Both return ``{"root", "classes", "train_images", "val_images"}`` and reuse what is on disk when called again with
the same arguments. ``synthetic_meta.json`` records the arguments and every file written (``manifest``): the makers
write only into an empty folder or one they made, never delete or overwrite a file they did not record, and replace
a dataset made with other arguments only with ``overwrite=True`` (deleting exactly the recorded files).

ADE20K layout (labels: 0 = other/ignored, 1..N = classes; mmseg reads it with ``reduce_zero_label=True``)::

    images/training/ADE_train_00000001.jpg        annotations/training/ADE_train_00000001.png
    images/validation/ADE_val_00000001.jpg        annotations/validation/ADE_val_00000001.png

Cityscapes layout (labels: trainIds 0..N-1, 255 = ignore)::

    leftImg8bit/train/<city>/<city>_000000_000001_leftImg8bit.png
    gtFine/train/<city>/<city>_000000_000001_gtFine_labelTrainIds.png      (and the same under val/)
"""
import os
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

from .manifest import claim, complete

# Spelled as mmseg's ADE20KDataset spells them (its 'bed ' has a trailing space): mmseg matches classes by name.
ADE20K_CLASSES = ("wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed ", "windowpane", "grass")
CITYSCAPES_CLASSES = ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
                      "vegetation", "terrain")
CITIES = {"train": ("aachen", "bremen"), "val": ("frankfurt",)}
# A scene is drawn in float64 (24 bytes a pixel): 4096 x 4096 is 400 MB.
MAX_IMAGE_SIDE = 4096
_UNLABELLED = -1  # internal marker for "no class" before writing each layout's own convention


def _class_look(num_classes: int) -> List[Tuple[np.ndarray, int, int]]:
    """(colour, stripe period, stripe direction) per class: well separated so that a few iterations learn them."""
    hues = np.linspace(0, 1, num_classes, endpoint=False)
    looks = []
    for index, hue in enumerate(hues):
        rgb = np.array([np.cos(2 * np.pi * (hue + shift)) for shift in (0, 1 / 3, 2 / 3)]) * 90 + 128
        looks.append((rgb, 4 + 3 * (index % 3), index % 2))
    return looks


def _paint(canvas: np.ndarray, mask: np.ndarray, look, rng: np.random.Generator) -> None:
    colour, period, direction = look
    height, width = mask.shape
    coords = np.arange(width if direction == 0 else height)
    stripes = ((coords // period) % 2) * 30.0 - 15.0
    stripes = stripes[None, :] if direction == 0 else stripes[:, None]
    texture = np.broadcast_to(stripes, (height, width))[..., None]
    region = colour + rng.normal(0, 12, 3) + texture
    canvas[mask] = region[mask]


def _scene(rng: np.random.Generator, size: Tuple[int, int], looks) -> Tuple[np.ndarray, np.ndarray]:
    """One RGB image (uint8) and its label map (class index, or _UNLABELLED)."""
    height, width = size
    canvas = np.zeros((height, width, 3), np.float64)
    labels = np.full((height, width), rng.integers(len(looks)), np.int64)
    _paint(canvas, np.ones((height, width), bool), looks[labels[0, 0]], rng)
    for _ in range(rng.integers(2, 6)):
        shape = Image.new("L", (width, height), 0)
        draw = ImageDraw.Draw(shape)
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        rx, ry = rng.uniform(0.1, 0.35) * width, rng.uniform(0.1, 0.35) * height
        if rng.random() < 0.5:
            draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=1)
        else:
            angles = np.sort(rng.uniform(0, 2 * np.pi, rng.integers(3, 7)))
            draw.polygon([(cx + rx * np.cos(a), cy + ry * np.sin(a)) for a in angles], fill=1)
        mask = np.asarray(shape, bool)
        if rng.random() < 0.15:  # an unlabelled thing: random grey, no class
            canvas[mask] = rng.uniform(40, 215) + rng.normal(0, 12, (int(mask.sum()), 1))
            labels[mask] = _UNLABELLED
            continue
        label = rng.integers(len(looks))
        _paint(canvas, mask, looks[label], rng)
        labels[mask] = label
    canvas += rng.normal(0, 8, canvas.shape)
    return np.clip(canvas, 0, 255).astype(np.uint8), labels


def _check_args(num_classes: int, known: Sequence[str], image_size: Sequence[int], num_train: int, num_val: int):
    if not 2 <= num_classes <= len(known):
        raise ValueError(f"num_classes must be in [2, {len(known)}], got {num_classes}")
    sides_ok = all(isinstance(side, (int, np.integer)) and 32 <= side <= MAX_IMAGE_SIDE for side in image_size)
    if len(image_size) != 2 or not sides_ok:
        raise ValueError(f"image_size must be (height, width), each an integer in [32, {MAX_IMAGE_SIDE}], got "
                         f"{tuple(image_size)}")
    if num_train < 1 or num_val < 1:
        raise ValueError(f"num_train and num_val must be positive, got {num_train}, {num_val}")


def _generate(root, layout, known, num_train, num_val, image_size, num_classes, seed, overwrite,
              names: Callable[[str, int], Tuple[str, str]], write_pair) -> Dict:
    _check_args(num_classes, known, image_size, num_train, num_val)
    root = os.path.abspath(os.path.expanduser(root))
    meta = dict(layout=layout, num_train=num_train, num_val=num_val, image_size=list(image_size),
                num_classes=num_classes, seed=seed, version=1)
    result = {"root": root, "classes": tuple(known[:num_classes]), "train_images": num_train,
              "val_images": num_val}
    splits = (("train", num_train, 0), ("val", num_val, 1))
    files = [name for split, count, _ in splits for index in range(1, count + 1) for name in names(split, index)]
    if claim(root, f"make_{layout}_layout", meta, files, overwrite):
        return result
    looks = _class_look(num_classes)
    # Independent streams per split: val is held out, and growing num_train leaves val unchanged.
    for split, count, stream in splits:
        rng = np.random.default_rng([seed, stream])
        for index in range(1, count + 1):
            image, labels = _scene(rng, tuple(image_size), looks)
            paths = [os.path.join(root, name) for name in names(split, index)]
            for path in paths:
                os.makedirs(os.path.dirname(path), exist_ok=True)
            write_pair(image, labels, *paths)
    complete(root, f"make_{layout}_layout", meta, files)
    return result


def _ade20k_names(split: str, index: int) -> Tuple[str, str]:
    folder, prefix = {"train": ("training", "ADE_train"), "val": ("validation", "ADE_val")}[split]
    name = f"{prefix}_{index:08d}"
    return f"images/{folder}/{name}.jpg", f"annotations/{folder}/{name}.png"


def _write_ade20k(image: np.ndarray, labels: np.ndarray, image_path: str, label_path: str) -> None:
    Image.fromarray(image).save(image_path, quality=95)
    # ADE20K convention: 0 is "other" (ignored once reduce_zero_label shifts it to 255), classes are 1..N.
    Image.fromarray((labels + 1).astype(np.uint8)).save(label_path)


def _cityscapes_names(split: str, index: int) -> Tuple[str, str]:
    city = CITIES[split][index % len(CITIES[split])]
    stem = f"{city}_000000_{index:06d}"
    return (f"leftImg8bit/{split}/{city}/{stem}_leftImg8bit.png",
            f"gtFine/{split}/{city}/{stem}_gtFine_labelTrainIds.png")


def _write_cityscapes(image: np.ndarray, labels: np.ndarray, image_path: str, label_path: str) -> None:
    Image.fromarray(image).save(image_path)
    train_ids = np.where(labels == _UNLABELLED, 255, labels).astype(np.uint8)  # Cityscapes: 255 = ignore
    Image.fromarray(train_ids).save(label_path)


def make_ade20k_layout(root: str, num_train: int = 48, num_val: int = 12, image_size: Sequence[int] = (128, 128),
                       num_classes: int = 5, seed: int = 0, overwrite: bool = False) -> Dict:
    """Write (or reuse) an ADE20K-layout dataset under ``root``; classes are ``ADE20K_CLASSES[:num_classes]``.
    ``overwrite`` replaces a dataset this function made there with other arguments (see the module docstring)."""
    return _generate(root, "ade20k", ADE20K_CLASSES, num_train, num_val, image_size, num_classes, seed, overwrite,
                     _ade20k_names, _write_ade20k)


def make_cityscapes_layout(root: str, num_train: int = 48, num_val: int = 12,
                           image_size: Sequence[int] = (128, 256), num_classes: int = 5, seed: int = 0,
                           overwrite: bool = False) -> Dict:
    """Write (or reuse) a Cityscapes-layout dataset under ``root``; classes are ``CITYSCAPES_CLASSES[:num_classes]``
    (trainIds ``0..num_classes-1``). ``overwrite`` as in :func:`make_ade20k_layout`."""
    return _generate(root, "cityscapes", CITYSCAPES_CLASSES, num_train, num_val, image_size, num_classes, seed,
                     overwrite, _cityscapes_names, _write_cityscapes)
