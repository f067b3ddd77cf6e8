"""The dataset makers' record of what they wrote, so that they never delete or overwrite a file they did not make.

Each maker writes ``synthetic_meta.json`` in its output folder before the first data file: the maker's name, its
arguments and the relative path of every file it is about to write (``complete`` turns true after the last one).
:func:`claim` decides what a new run may do with the folder:

- absent or empty: write;
- a complete dataset of the same maker and arguments: reuse, write nothing;
- the same maker and arguments, interrupted: rewrite its own files;
- made with other arguments: refused, unless ``overwrite``, which deletes exactly the files the record lists (and
  folders left empty by that), never anything else;
- anything else (a folder with files and no record, another maker's record): refused, also with ``overwrite``.

A file the new run would write that exists but is not in the record (a user's file) is refused too.
"""
import json
import os
from typing import Dict, Iterable, List, Optional

from ..atomic_io import atomic_write_text

MANIFEST = "synthetic_meta.json"
_VERSION = 2


def read_manifest(root: str) -> Optional[Dict]:
    """The record in ``root``, or None (no record, or one written by a version without file lists)."""
    try:
        with open(os.path.join(root, MANIFEST)) as handle:
            record = json.load(handle)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("version") == _VERSION else None


def _write(root: str, maker: str, arguments: Dict, files: List[str], complete: bool) -> None:
    atomic_write_text(os.path.join(root, MANIFEST), json.dumps(
        {"version": _VERSION, "maker": maker, "arguments": arguments, "complete": complete, "files": files}))


def _remove_recorded(root: str, files: Iterable[str]) -> None:
    """Delete the recorded files (only those), then the folders under ``root`` that this left empty."""
    folders = set()
    for relative in files:
        path = os.path.join(root, relative)
        if os.path.isfile(path) or os.path.islink(path):
            os.remove(path)
        folders.add(os.path.dirname(path))
    for folder in sorted(folders, key=len, reverse=True):  # deepest first
        while os.path.abspath(folder) != os.path.abspath(root) and os.path.isdir(folder) and not os.listdir(folder):
            os.rmdir(folder)
            folder = os.path.dirname(folder)


def claim(root: str, maker: str, arguments: Dict, files: List[str], overwrite: bool = False,
          hint: str = "") -> bool:
    """Prepare ``root`` for ``maker`` to write ``files`` (paths relative to ``root``); see the module docstring.

    Args:
        root: output folder (created if absent).
        maker: the maker's name, recorded.
        arguments: what determines the content (JSON-serialisable), recorded and compared.
        files: every file the run will write, the record itself excluded.
        overwrite: allow replacing a dataset this maker made with other arguments (its recorded files only).
        hint: appended to refusal messages (how to choose another folder in the caller's terms).

    Returns:
        True when ``root`` already holds the complete dataset (write nothing), False when the caller must write
        ``files`` and then call :func:`complete`.

    Raises:
        FileExistsError: the folder holds files this maker did not record, or another dataset without overwrite.
    """
    root = os.path.abspath(root)
    record = read_manifest(root)
    if record is not None and record.get("maker") == maker and record.get("arguments") == arguments \
            and record.get("complete") and all(os.path.isfile(os.path.join(root, f)) for f in record["files"]):
        return True
    if record is None or record.get("maker") != maker:
        if os.path.isdir(root) and os.listdir(root):
            if record:
                what = f"holds a dataset of {record.get('maker')}"
            elif os.path.isfile(os.path.join(root, MANIFEST)):
                what = (f"its {MANIFEST} comes from a version of {maker} that did not record its files (delete that "
                        "dataset yourself if you no longer need it)")
            else:
                what = f"has no record ({MANIFEST} with a file list) of files written by {maker}"
            raise FileExistsError(f"{root} is not empty and {what}: nothing in it is deleted or overwritten. Choose "
                                  f"a new or empty folder{hint}.")
        recorded: List[str] = []
    else:
        recorded = list(record.get("files", []))
        if record.get("arguments") != arguments:
            if not overwrite:
                old = record.get("arguments") or {}
                changes = ", ".join(f"{key} {old.get(key)!r} -> {arguments.get(key)!r}"
                                    for key in sorted(set(old) | set(arguments)) if old.get(key) != arguments.get(key))
                raise FileExistsError(
                    f"{root} holds a dataset {maker} made with other arguments ({changes}). Pass overwrite=True "
                    f"(--overwrite) to replace it (only the {len(recorded)} files it records are deleted), or choose "
                    f"another folder{hint}.")
            _remove_recorded(root, recorded)
            recorded = []
    foreign = [f for f in files if os.path.lexists(os.path.join(root, f)) and f not in set(recorded)]
    if foreign:
        raise FileExistsError(f"{root} already has {len(foreign)} file(s) this maker would write but did not make "
                              f"(e.g. {foreign[0]}); they are left alone. Choose another folder{hint}.")
    os.makedirs(root, exist_ok=True)
    # Recorded before the first file is written: an interrupted run still knows (and may redo) all of its files.
    _write(root, maker, arguments, sorted(set(files) | set(recorded)), complete=False)
    return False


def complete(root: str, maker: str, arguments: Dict, files: List[str]) -> None:
    """Mark the dataset in ``root`` complete (after every file is written)."""
    _write(os.path.abspath(root), maker, arguments, sorted(files), complete=True)


__all__ = ["MANIFEST", "claim", "complete", "read_manifest"]
