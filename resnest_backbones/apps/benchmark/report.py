"""The printed tables: ratios to ResNet-50, to the faster peer and to our plain eager step, memory columns."""
from typing import Dict, List, Optional

from .models import MMDET, PEER_RESNESTS, PLAIN, SHAPES, TRAINING, TV


def format_table(rows: List[Dict], columns: List[str]) -> str:
    cells = [[str(row.get(column, "")) for column in columns] for row in rows]
    widths = [max(len(column), *(len(cell[i]) for cell in cells)) for i, column in enumerate(columns)]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(columns, widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(cell, widths)) + " |" for cell in cells]
    return "\n".join(lines)


def ratio_rows(workload: str, label: str, medians: Dict[str, float], memory: Optional[Dict[str, float]] = None,
               saved: Optional[Dict[str, float]] = None) -> List[Dict]:
    peers = [medians[name] for name in PEER_RESNESTS if name in medians]
    rows = []
    for name, seconds in medians.items():
        shown = workload + (" (mmdet: features)" if workload == "cls" and MMDET in medians else "")
        row = {"workload": shown, "setting": label, "model": name, "median ms": f"{seconds * 1000:.1f}"}
        if TV in medians:
            row["x resnet50"] = f"{seconds / medians[TV]:.2f}"
        if peers:
            row["x faster peer"] = f"{seconds / min(peers):.2f}"
        if PLAIN in medians and workload in TRAINING:
            row["x plain eager"] = f"{seconds / medians[PLAIN]:.3f}"
        row["img/s"] = f"{SHAPES[workload][0] / seconds:.2f}"
        for label_, values in (("peak", memory), ("saved", saved)):
            if values and name in values:
                row[f"{label_} MiB"] = f"{values[name]:.0f}"
                if TV in values:
                    row[f"{label_} x resnet50"] = f"{values[name] / values[TV]:.2f}"
        rows.append(row)
    return rows
