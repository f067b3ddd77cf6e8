"""A synthetic instance-segmentation dataset of coloured shapes, written in the real COCO and LVIS v1 formats.

Used by the detectron2 and MMDetection quick starts and tests, so that they run the frameworks' own COCO/LVIS
loaders and evaluators with no download. Objects are learnable: three classes told apart by shape only (circle,
square, triangle; random colours, sizes and rotations), non-overlapping so every mask is the visible object, on a
noisy background. Train and val are drawn from independent random streams (a held-out split).

API::

    make_synthetic_dataset(root, num_train=800, num_val=100, image_size=256, objects_per_image=(2, 6),
                           object_size=(0.12, 0.4), seed=0, image_format="png", overwrite=False) -> Dict[str, str]
    synthetic_paths(root) -> Dict[str, str]     # the same paths, without making anything

Both return ``{"root", "image_root", "coco_train", "coco_val", "lvis_train", "lvis_val"}``. Layout under ``root``::

    images/train/000001.png ...              images/val/000001.png ...
    annotations/instances_train.json         annotations/instances_val.json     (COCO; file_name "train/000001.png")
    annotations/lvis_v1_train.json           annotations/lvis_v1_val.json       (LVIS v1)

COCO files are relative to ``image_root`` (``root/images``): ``register_coco_instances(name, {}, coco_train,
image_root)`` in detectron2, ``data_prefix=dict(img="images/")`` in mmdet. LVIS images carry ``coco_url`` =
``http://images.cocodataset.org/<split>/<name>``: detectron2's ``load_lvis_json`` reads ``<split>/<name>`` from it and
joins it to ``image_root`` by string concatenation (pass ``image_root`` with a trailing slash), mmdet's
``LVISV1Dataset`` strips that host and joins the rest with ``data_prefix``. They also carry ``file_name`` (``<split>/<name>``), ``neg_category_ids`` (every class absent
from the exhaustively annotated image) and ``not_exhaustive_category_ids`` (empty). LVIS categories carry
``frequency`` ('r' in 1-10 training images, 'c' in 11-100, 'f' above, as LVIS defines it), ``image_count``,
``instance_count``, ``synset``, ``synonyms`` and ``def``. Category ids are 1..3 in both formats.

Calling ``make_synthetic_dataset`` again with the same arguments reuses what is on disk; ``synthetic_meta.json``
records the arguments and every file written (``manifest``). The maker writes only into an empty folder or one it
made itself, and never deletes or overwrites a file it did not record; a dataset made with different arguments is
refused unless ``overwrite=True``, which deletes exactly the recorded files.
"""
import json
import math
import os
from typing import Dict, List, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

from ..atomic_io import atomic_write_text
from .manifest import claim, complete

CLASSES = ("circle", "square", "triangle")
_LVIS_HOST = "http://images.cocodataset.org/"
_FORMAT_VERSION = 1
_MAKER = "make_synthetic_dataset"
# Each image is drawn in float64 (24 bytes a pixel): 4096 px is 400 MB; 100,000 px would be 224 GiB.
MAX_IMAGE_SIZE = 4096


def synthetic_paths(root: str) -> Dict[str, str]:
    """The files ``make_synthetic_dataset(root)`` writes (whether or not they exist yet)."""
    root = os.path.abspath(os.path.expanduser(root))
    ann = os.path.join(root, "annotations")
    return {"root": root, "image_root": os.path.join(root, "images"),
            "coco_train": os.path.join(ann, "instances_train.json"),
            "coco_val": os.path.join(ann, "instances_val.json"),
            "lvis_train": os.path.join(ann, "lvis_v1_train.json"),
            "lvis_val": os.path.join(ann, "lvis_v1_val.json")}


def _polygon(kind: str, center: Tuple[float, float], radius: float, angle: float) -> np.ndarray:
    """Vertices (N, 2) of a shape with circumradius ``radius``; circles are 32-gons (COCO polygons)."""
    count = {"circle": 32, "square": 4, "triangle": 3}[kind]
    angles = angle + np.arange(count) * 2 * math.pi / count
    return np.stack([center[0] + radius * np.cos(angles), center[1] + radius * np.sin(angles)], axis=1)


def _shoelace_area(vertices: np.ndarray) -> float:
    x, y = vertices[:, 0], vertices[:, 1]
    return float(abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))) / 2)


def _overlaps(box: Sequence[float], boxes: List[Sequence[float]], margin: float = 3.0) -> bool:
    x0, y0, x1, y1 = box
    return any(x0 < b[2] + margin and b[0] < x1 + margin and y0 < b[3] + margin and b[1] < y1 + margin
               for b in boxes)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A random colour with a smooth gradient and pixel noise, so the model cannot just threshold colours."""
    base = rng.uniform(40, 215, size=3)
    ramp = np.linspace(-1, 1, size)
    gradient = rng.uniform(-25, 25, size=(2, 3))
    image = (base + ramp[None, :, None] * gradient[0] + ramp[:, None, None] * gradient[1]
             + rng.normal(0, 8, size=(size, size, 3)))
    return np.clip(image, 0, 255)


def _contrasting_colour(rng: np.random.Generator, background: np.ndarray) -> Tuple[int, int, int]:
    mean = background.reshape(-1, 3).mean(0)
    for _ in range(100):
        colour = rng.uniform(0, 255, size=3)
        if np.linalg.norm(colour - mean) > 90:
            break
    return tuple(int(c) for c in colour)


def _draw_image(rng: np.random.Generator, size: int, objects_per_image: Tuple[int, int],
                object_size: Tuple[float, float]):
    """One image and its objects as ``(class index, vertices)``; objects never overlap."""
    canvas = _background(rng, size)
    image = Image.fromarray(canvas.astype(np.uint8))
    draw = ImageDraw.Draw(image)
    objects, boxes = [], []
    for _ in range(int(rng.integers(objects_per_image[0], objects_per_image[1] + 1))):
        for _attempt in range(50):
            label = int(rng.integers(len(CLASSES)))
            radius = rng.uniform(*object_size) * size / 2
            center = rng.uniform(radius + 1, size - radius - 1, size=2)
            vertices = _polygon(CLASSES[label], center, radius, rng.uniform(0, 2 * math.pi))
            box = (*vertices.min(0), *vertices.max(0))
            if not _overlaps(box, boxes):
                break
        else:
            continue  # no free space left for another object
        boxes.append(box)
        draw.polygon([tuple(v) for v in vertices], fill=_contrasting_colour(rng, canvas))
        objects.append((label, vertices))
    return image, objects


def _annotation(ann_id: int, image_id: int, label: int, vertices: np.ndarray) -> Dict:
    x0, y0 = vertices.min(0)
    x1, y1 = vertices.max(0)
    return {"id": ann_id, "image_id": image_id, "category_id": label + 1,
            "segmentation": [[round(float(v), 2) for v in vertices.reshape(-1)]],
            "bbox": [round(float(x0), 2), round(float(y0), 2), round(float(x1 - x0), 2), round(float(y1 - y0), 2)],
            "area": round(_shoelace_area(vertices), 2), "iscrowd": 0}


def _make_split(split: str, count: int, rng: np.random.Generator, paths: Dict[str, str], image_size: int,
                objects_per_image: Tuple[int, int], object_size: Tuple[float, float], image_format: str):
    folder = os.path.join(paths["image_root"], split)
    os.makedirs(folder, exist_ok=True)
    images, annotations = [], []
    for image_id in range(1, count + 1):
        image, objects = _draw_image(rng, image_size, objects_per_image, object_size)
        name = f"{image_id:06d}.{image_format}"
        image.save(os.path.join(folder, name), **({"quality": 95} if image_format == "jpg" else {}))
        images.append({"id": image_id, "file_name": f"{split}/{name}", "width": image_size, "height": image_size})
        for label, vertices in objects:
            annotations.append(_annotation(len(annotations) + 1, image_id, label, vertices))
    return images, annotations


def _coco_json(images: List[Dict], annotations: List[Dict]) -> Dict:
    return {"info": {"description": "resnest_backbones synthetic shapes", "version": "1.0"}, "licenses": [],
            "images": images, "annotations": annotations,
            "categories": [{"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(CLASSES)]}


def _lvis_frequency(image_count: int) -> str:
    return "r" if image_count <= 10 else ("c" if image_count <= 100 else "f")


def _lvis_json(images: List[Dict], annotations: List[Dict], train_annotations: List[Dict]) -> Dict:
    """The same split in LVIS v1 layout; category statistics come from the training split, as in LVIS."""
    present: Dict[int, set] = {}
    for ann in annotations:
        present.setdefault(ann["image_id"], set()).add(ann["category_id"])
    category_ids = set(range(1, len(CLASSES) + 1))
    lvis_images = [{"id": img["id"], "width": img["width"], "height": img["height"], "file_name": img["file_name"],
                    "coco_url": _LVIS_HOST + img["file_name"], "license": 0,
                    # Every image is exhaustively annotated: each absent class is verified absent.
                    "neg_category_ids": sorted(category_ids - present.get(img["id"], set())),
                    "not_exhaustive_category_ids": []} for img in images]
    lvis_annotations = [{k: v for k, v in ann.items() if k != "iscrowd"} for ann in annotations]
    categories = []
    for index, name in enumerate(CLASSES):
        mine = [a for a in train_annotations if a["category_id"] == index + 1]
        image_count = len({a["image_id"] for a in mine})
        categories.append({"id": index + 1, "name": name, "synset": f"{name}.n.01", "synonyms": [name],
                           "def": f"a {name} drawn in one colour", "frequency": _lvis_frequency(image_count),
                           "image_count": image_count, "instance_count": len(mine)})
    return {"info": {"description": "resnest_backbones synthetic shapes (LVIS v1 layout)", "version": "1.0"},
            "licenses": [], "images": lvis_images, "annotations": lvis_annotations, "categories": categories}


def _write_json(path: str, content: Dict) -> None:
    atomic_write_text(path, json.dumps(content))  # readers never see a half-written file


def make_synthetic_dataset(root: str, num_train: int = 800, num_val: int = 100, image_size: int = 256,
                           objects_per_image: Tuple[int, int] = (2, 6), object_size: Tuple[float, float] = (0.12, 0.4),
                           seed: int = 0, image_format: str = "png", overwrite: bool = False) -> Dict[str, str]:
    """Write the dataset under ``root`` (or reuse it if already written with the same arguments).

    Args:
        root (str): output folder.
        num_train, num_val (int): images per split; val is held out (an independent random stream).
        image_size (int): side of the square images, in pixels.
        objects_per_image (tuple): inclusive range of objects per image (fewer if they do not fit).
        object_size (tuple): range of an object's circumscribed diameter as a fraction of ``image_size``.
        seed (int): random seed; the same arguments always give the same dataset.
        image_format (str): ``"png"`` or ``"jpg"``.
        overwrite (bool): replace a dataset this function made in ``root`` with other arguments (deleting only
            the files its record lists) instead of raising.

    Returns:
        dict of paths, see ``synthetic_paths``.

    Raises:
        FileExistsError: ``root`` holds files this function did not make, or (without ``overwrite``) a dataset
            made with other arguments.
    """
    if image_format not in ("png", "jpg"):
        raise ValueError(f"image_format must be 'png' or 'jpg', got {image_format!r}")
    if num_train < 1 or num_val < 1:
        raise ValueError(f"num_train and num_val must be >= 1, got {num_train}, {num_val}")
    if not 0 < object_size[0] <= object_size[1] < 1:
        raise ValueError(f"object_size must satisfy 0 < min <= max < 1, got {object_size}")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or not 16 <= image_size <= MAX_IMAGE_SIZE:
        raise ValueError(f"image_size must be an integer in [16, {MAX_IMAGE_SIZE}] (pixels), got {image_size!r}")
    if not 0 <= objects_per_image[0] <= objects_per_image[1]:
        raise ValueError(f"objects_per_image must satisfy 0 <= min <= max, got {tuple(objects_per_image)}")
    paths = synthetic_paths(root)
    arguments = dict(version=_FORMAT_VERSION, num_train=num_train, num_val=num_val, image_size=image_size,
                     objects_per_image=list(objects_per_image), object_size=list(object_size), seed=seed,
                     image_format=image_format)
    files = [f"images/{split}/{index:06d}.{image_format}" for split, count in (("train", num_train), ("val", num_val))
             for index in range(1, count + 1)]
    files += [os.path.relpath(paths[key], paths["root"]) for key in ("coco_train", "coco_val", "lvis_train",
                                                                      "lvis_val")]
    if claim(paths["root"], _MAKER, arguments, files, overwrite):
        return paths
    train_rng, val_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    common = dict(paths=paths, image_size=image_size, objects_per_image=tuple(objects_per_image),
                  object_size=tuple(object_size), image_format=image_format)
    train = _make_split("train", num_train, train_rng, **common)
    val = _make_split("val", num_val, val_rng, **common)
    _write_json(paths["coco_train"], _coco_json(*train))
    _write_json(paths["coco_val"], _coco_json(*val))
    _write_json(paths["lvis_train"], _lvis_json(*train, train_annotations=train[1]))
    _write_json(paths["lvis_val"], _lvis_json(*val, train_annotations=train[1]))
    complete(paths["root"], _MAKER, arguments, files)  # last: marks the dataset complete
    return paths
