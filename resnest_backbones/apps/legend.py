"""A legend strip for side-by-side drawings (ground truth | predictions): which panel is which, the score threshold,
and one colour swatch per class. Framework-free (Pillow): the one legend of every quick-start drawing (detectron2's
``detectron2_visualize.py``, the OpenMMLab visualizers)."""
from typing import Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw, ImageFont

PAD = 4  # pixels around the text


def legend_strip(width: int, titles: Sequence[str], classes: Sequence[str],
                 palette: Sequence[Tuple[int, int, int]]) -> np.ndarray:
    """An RGB strip ``width`` pixels wide to put above a drawing made of ``len(titles)`` panels side by side.

    Args:
        width: width of the drawing, in pixels.
        titles: one title per panel, left to right, each centred over its panel; if one is wider than its panel,
            one line per title instead, prefixed with its side ("left: ", "right: ") when there are two.
        classes: class names, drawn with their colours after the titles (wrapping onto more lines as needed).
        palette: one RGB colour per class, the colours the panels use.

    Returns:
        ``H x width x 3`` uint8, black background, white titles.
    """
    if len(palette) < len(classes):
        raise ValueError(f"palette has {len(palette)} colours for {len(classes)} classes")
    font = ImageFont.load_default()  # Pillow's built-in bitmap font: the one font there without a download
    canvas_width = max(1, width)
    line = _text_size(font, "Ag")[1] + PAD
    # Lay the classes out first to know the height: swatch, name, gap; a new line when the next one does not fit.
    entries, x, rows = [], PAD, 0
    for name, color in zip(classes, palette):
        entry = line - PAD + 2 + _text_size(font, name)[0] + 3 * PAD
        if x + entry > canvas_width and x > PAD:
            x, rows = PAD, rows + 1
        entries.append((x, rows, name, tuple(int(c) for c in color)))
        x += entry
    panel = canvas_width / max(1, len(titles))
    centred = all(_text_size(font, title)[0] <= panel - 2 * PAD for title in titles)
    if not centred:  # a title wider than its panel: one line per panel, saying which side it is
        sides = ("left: ", "right: ") if len(titles) == 2 else ("",) * len(titles)
        titles = [side + title for side, title in zip(sides, titles)]
    title_lines = 1 if centred else len(titles)
    height = line * (title_lines + (rows + 1 if classes else 0)) + PAD
    image = Image.new("RGB", (canvas_width, height))
    draw = ImageDraw.Draw(image)
    for i, title in enumerate(titles):
        if centred:
            position = (panel * (i + 0.5) - _text_size(font, title)[0] / 2, PAD // 2)
        else:
            position = (PAD, PAD // 2 + line * i)
        draw.text(position, title, fill=(255, 255, 255), font=font)
    swatch = line - PAD
    for x, row, name, color in entries:
        top = line * (title_lines + row) + PAD // 2
        draw.rectangle([x, top, x + swatch - 1, top + swatch - 1], fill=color)
        draw.text((x + swatch + 2, top), name, fill=color, font=font)
    return np.asarray(image)[:, :width]


def panel_titles(drew_truth: bool, drew_predictions: bool, score_threshold: Optional[float]) -> Sequence[str]:
    """The titles of the panels an OpenMMLab visualizer drew (it leaves out a panel it has nothing for)."""
    titles = ["ground truth"] if drew_truth else []
    if drew_predictions:
        titles.append("predictions" if score_threshold is None else f"predictions >= {score_threshold:.2f}")
    return titles


def _text_size(font, text: str) -> Tuple[int, int]:
    left, top, right, bottom = font.getbbox(text)
    return right - left, bottom - top
