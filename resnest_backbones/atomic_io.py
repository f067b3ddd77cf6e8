"""Files that are either complete or absent: what checkpoint writers use so that a killed run never leaves a
partial checkpoint (or a ``last_checkpoint`` pointing at one) behind.

The pattern: write a temporary file in the destination's folder, flush it to disk (``fsync``), then rename it over
the destination (``os.replace``, atomic on POSIX and Windows), then flush the folder so the rename itself survives
a power loss. A reader sees the old file or the new one, never a mix.
"""
import os
import uuid
from typing import BinaryIO, Callable

import torch


def temporary_name(path: str) -> str:
    """A unique hidden name next to ``path`` (same folder, so the final rename cannot cross file systems)."""
    directory, name = os.path.split(os.path.abspath(path))
    return os.path.join(directory, f".{name}.{uuid.uuid4().hex[:8]}.tmp")


def _fsync_directory(directory: str) -> None:
    if os.name != "posix":  # Windows cannot open a folder for fsync; os.replace is still atomic there
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def commit(temporary: str, path: str) -> None:
    """Make the finished file ``temporary`` durable and rename it to ``path`` in one step."""
    fd = os.open(temporary, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
    _fsync_directory(os.path.dirname(os.path.abspath(path)))


def atomic_write(path: str, write: Callable[[BinaryIO], None]) -> None:
    """Create or replace ``path`` with what ``write(file)`` writes, atomically (see the module docstring).

    A failure or interruption inside ``write`` leaves ``path`` as it was; the temporary file is removed on errors
    (a killed process leaves it behind under a hidden ``.<name>.<random>.tmp`` name that nothing reads).
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    temporary = temporary_name(path)
    try:
        with open(temporary, "xb") as handle:
            write(handle)
        commit(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def atomic_save(obj, path: str) -> None:
    """``torch.save(obj, path)``, atomically."""
    atomic_write(path, lambda handle: torch.save(obj, handle))


def atomic_write_text(path: str, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path``, atomically."""
    atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


__all__ = ["atomic_write", "atomic_save", "atomic_write_text", "commit", "temporary_name"]
