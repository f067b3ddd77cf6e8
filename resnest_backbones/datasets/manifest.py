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

A record is a file in a folder that users share and copy, so it is untrusted input: every entry must name a file
inside the folder once resolved (no absolute path, no ``..``, no link to a folder outside), or the record is refused
(:class:`UnsafeRecordError`, naming the entry) before anything is deleted; the clean-up of emptied folders never
goes above the dataset folder.
"""
import json
import os
from typing import Any, Dict, Iterable, List, Optional, Tuple

from ..atomic_io import atomic_write_text

MANIFEST = "synthetic_meta.json"
_VERSION = 2


class UnsafeRecordError(ValueError):
    """The record lists a path outside its folder."""


class DatasetChangedError(FileExistsError):
    """The folder holds a dataset this maker made with other arguments (``changes``: ``(argument, recorded, new)``
    each)."""

    def __init__(self, message: str, root: str, changes: List[Tuple[str, Any, Any]], recorded: int):
        super().__init__(message)
        self.root, self.changes, self.recorded = root, changes, recorded


def _inside(root: str, relative: str) -> bool:
    """Whether ``relative`` names a file inside ``root`` once resolved. The file itself may be a link (deleting it
    removes the link); every folder on its way is resolved."""
    if not isinstance(relative, str) or not relative or os.path.isabs(relative) or "\0" in relative:
        return False
    real_root = os.path.realpath(root)
    folder, name = os.path.split(os.path.join(real_root, relative))
    if name in ("", ".", ".."):
        return False
    return os.path.commonpath([real_root, os.path.realpath(folder)]) == real_root


def check_record(root: str, record: Dict) -> None:
    """Raise :class:`UnsafeRecordError` unless every file ``record`` lists is inside ``root``."""
    files = record.get("files", [])
    bad = [entry for entry in files if not _inside(root, entry)] if isinstance(files, list) else [files]
    if bad:
        raise UnsafeRecordError(
            f"{os.path.join(root, MANIFEST)} lists {bad[0]!r}, which is not a file inside {root} (a record may name "
            "only files of its own folder; it was edited, or copied from elsewhere). Nothing was deleted. Remove "
            "that dataset folder yourself, or choose another folder.")


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


def _strictly_inside(root: str, folder: str) -> bool:
    return folder != root and os.path.commonpath([root, folder]) == root


def _remove_recorded(root: str, files: Iterable[str]) -> None:
    """Delete the recorded files (only those; the record was checked with ``check_record``), then the folders
    strictly under ``root`` that this left empty."""
    root = os.path.realpath(root)
    folders = set()
    for relative in files:
        folder, name = os.path.split(os.path.join(root, relative))
        path = os.path.join(os.path.realpath(folder), name)
        if os.path.isfile(path) or os.path.islink(path):
            os.remove(path)
        folders.add(os.path.dirname(path))
    for folder in sorted(folders, key=len, reverse=True):  # deepest first
        while _strictly_inside(root, folder) and os.path.isdir(folder) and not os.listdir(folder):
            os.rmdir(folder)
            folder = os.path.dirname(folder)


def _changed(root: str, maker: str, old: Dict, arguments: Dict, recorded: int, hint: str) -> DatasetChangedError:
    changes = [(key, old.get(key), arguments.get(key))
               for key in sorted(set(old) | set(arguments)) if old.get(key) != arguments.get(key)]
    listed = ", ".join(f"{key} {before!r} -> {after!r}" for key, before, after in changes)
    return DatasetChangedError(
        f"{root} holds a dataset {maker} made with other arguments ({listed}). Pass overwrite=True (--overwrite) to "
        f"replace it (only the {recorded} files it records are deleted), or choose another folder{hint}.", root,
        changes, recorded)


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
        FileExistsError: the folder holds files this maker did not record, or (``DatasetChangedError``) another
            dataset of this maker without overwrite.
        NotADirectoryError: ``root`` is a file.
        UnsafeRecordError: the record names a file outside ``root``.
    """
    root = os.path.abspath(root)
    if os.path.exists(root) and not os.path.isdir(root):
        raise NotADirectoryError(f"{root} is a file, not a folder: choose a folder for the dataset{hint}.")
    record = read_manifest(root)
    if record is not None:
        check_record(root, record)
        record.setdefault("files", [])
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
                raise _changed(root, maker, record.get("arguments") or {}, arguments, len(recorded), hint)
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


__all__ = ["MANIFEST", "DatasetChangedError", "UnsafeRecordError", "check_record", "claim", "complete",
           "read_manifest"]
