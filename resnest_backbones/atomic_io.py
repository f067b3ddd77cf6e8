"""Files that are either complete or absent: what checkpoint writers use so that a killed run never leaves a
partial checkpoint (or a ``last_checkpoint`` pointing at one) behind.

The pattern: write a temporary file in the destination's folder, flush it to disk (``fsync``), then rename it over
the destination (``os.replace``, atomic on POSIX and Windows), then flush the folder so the rename itself survives
a power loss. A reader sees the old file or the new one, never a mix.

A killed writer leaves its temporary file behind (``.<name>.<pid>-<host>-<random>.tmp``, hidden). The next write
into that folder removes the temporary files of writers that are no longer running: the pid in the name is probed
on this host (``ownership.process_running``); a live writer's file, or one written on another host, is kept.
Temporary files of earlier versions (``.<name>.<random>.tmp``, no pid) are removed once an hour old.
"""
import hashlib
import os
import re
import time
import uuid
from typing import BinaryIO, Callable, List

import torch

from .ownership import host_name, process_running

_TEMPORARY = re.compile(r"^\..+\.(\d+)-([0-9a-f]{6})-[0-9a-f]{8}\.tmp$")
_LEGACY_TEMPORARY = re.compile(r"^\..+\.[0-9a-f]{8}\.tmp$")
_LEGACY_AGE = 3600  # seconds: no write of ours leaves its temporary file untouched that long


def _host_tag() -> str:
    return hashlib.sha256(host_name().encode("utf-8")).hexdigest()[:6]


def temporary_name(path: str) -> str:
    """A unique hidden name next to ``path`` (same folder, so the final rename cannot cross file systems), naming
    this process and host so that a later write can tell whether its writer still runs."""
    directory, name = os.path.split(os.path.abspath(path))
    return os.path.join(directory, f".{name}.{os.getpid()}-{_host_tag()}-{uuid.uuid4().hex[:8]}.tmp")


def _abandoned(directory: str, name: str) -> bool:
    match = _TEMPORARY.match(name)
    if match:
        return match.group(2) == _host_tag() and not process_running(int(match.group(1)))
    if _LEGACY_TEMPORARY.match(name):
        try:
            return time.time() - os.path.getmtime(os.path.join(directory, name)) > _LEGACY_AGE
        except OSError:
            return False
    return False


def remove_abandoned_temporaries(directory: str) -> List[str]:
    """Delete the temporary files that killed writers of this module left in ``directory`` (see the module
    docstring); returns their paths. Nothing else is touched."""
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    removed = []
    for name in names:
        if name.endswith(".tmp") and _abandoned(directory, name):
            path = os.path.join(directory, name)
            try:
                os.remove(path)
                removed.append(path)
            except OSError:  # removed by another writer meanwhile, or not ours to remove
                pass
    return removed


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
    (a killed process leaves it behind under a hidden name that nothing reads, removed by the next write here).
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    remove_abandoned_temporaries(directory)
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


__all__ = ["atomic_write", "atomic_save", "atomic_write_text", "commit", "remove_abandoned_temporaries",
           "temporary_name"]
