"""Who owns an output folder: the run lock of a training's output folder, and whether the process that wrote a file
is still running (to tell a killed writer's leftovers from a live writer's files).

A run takes ``<folder>/run.lock`` before it writes into the folder and deletes it when it ends, however it ends
short of being killed. The lock records the owner's pid, host, process start time, start date and command line::

    lock = acquire_run_lock(cfg.OUTPUT_DIR, key="OUTPUT_DIR")   # OutputInUseError if a live run holds it
    try:
        train()
    finally:
        lock.release()

- a live run holds the lock: refused, naming that run;
- the lock of a run on this host that is no longer running (killed; its pid is gone, or now belongs to a process
  that started later): taken over, ``lock.taken_over`` says whose it was (callers log it);
- the lock of a run on another host: its process cannot be probed from here, so it counts as live; the message
  says which file to delete if that run is over;
- a folder whose last run ended (the lock is gone): free, for ``--resume`` as for a new run.

The lock file is created with its whole content in one step (a hard link of a finished temporary file), so a reader
never sees a half-written lock. This module imports the standard library only.
"""
import atexit
import datetime
import json
import os
import socket
import sys
import uuid
from dataclasses import dataclass
from typing import Callable, Dict, Optional

LOCK_NAME = "run.lock"
_HELD: Dict[str, "RunLock"] = {}  # lock path -> this process's lock (taking it twice in one process nests)


class OutputInUseError(RuntimeError):
    """Another run that is still running holds the output folder."""


def host_name() -> str:
    return socket.gethostname()


def process_start_time(pid: int) -> Optional[str]:
    """When process ``pid`` started (Linux: clock ticks since boot, ``/proc/<pid>/stat`` field 22), or None where
    that cannot be read. A pid reused by a later process has another start time."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            stat = handle.read()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()  # after the command name, which may hold spaces and parentheses
    return fields[19] if len(fields) > 19 else None


def process_running(pid: int, started: Optional[str] = None) -> bool:
    """Whether process ``pid`` of this host is running (and, with ``started``, is the process that started then).

    Where no safe probe exists (not POSIX: ``os.kill`` would terminate the process on Windows) it answers True, so
    that callers keep what may belong to a live process.
    """
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False  # not a process id (0 and negative numbers address process groups)
    if os.name != "posix":
        return True
    try:
        os.kill(pid, 0)  # signal 0: existence check only
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    if started is not None:
        now = process_start_time(pid)
        if now is not None and now != started:
            return False  # the recorded process ended and its pid was reused
    return True


@dataclass
class RunLock:
    """This process's hold on ``path`` (see :func:`acquire_run_lock`)."""

    path: str
    token: str
    taken_over: Optional[Dict] = None  # the record of the ended run whose lock this one replaced
    depth: int = 1
    pid: int = 0  # the holder; a forked child inherits this object but never releases the lock

    def __post_init__(self):
        self.pid = self.pid or os.getpid()

    def release(self) -> None:
        """Delete the lock file if it is still this run's (after the outermost acquisition in this process)."""
        self.depth -= 1
        if self.depth > 0 or os.getpid() != self.pid:
            return
        _HELD.pop(self.path, None)
        if (_read(self.path) or {}).get("token") == self.token:
            try:
                os.remove(self.path)
            except FileNotFoundError:
                pass

    def describe_takeover(self) -> Optional[str]:
        """A log line about the lock this run took over, or None."""
        if self.taken_over is None:
            return None
        return f"{self.path}: took over the lock of a run that is no longer running ({describe_owner(self.taken_over)})"


def describe_owner(record: Dict) -> str:
    command = record.get("command") or "?"
    return (f"pid {record.get('pid')} on host {record.get('host')}, started {record.get('since', '?')}: "
            f"{command[:200]}")


def _read(path: str) -> Optional[Dict]:
    """The record in a lock file; None when there is no file; ``{}`` for a file that is not a lock record."""
    try:
        with open(path, "rb") as handle:
            record = json.loads(handle.read(65536).decode("utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _create(path: str, record: Dict) -> bool:
    """Create the lock file with ``record`` as its content in one step; False if a lock file exists."""
    temporary = f"{path}.{record['token']}.new"
    with open(temporary, "w") as handle:
        json.dump(record, handle)
    try:
        os.link(temporary, path)  # fails if the lock exists; the lock appears complete or not at all
        return True
    except FileExistsError:
        return False
    except OSError:  # a file system without hard links: exclusive creation, written right after
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as handle:
            json.dump(record, handle)
        return True
    finally:
        os.remove(temporary)


def _live(record: Dict) -> bool:
    if record.get("host") != host_name():
        return True  # cannot be probed from here
    return process_running(record.get("pid"), record.get("started"))


def _remove_if_unchanged(path: str, record: Dict) -> None:
    """Remove the ended run's lock, unless another process replaced it meanwhile (then that lock is put back)."""
    aside = f"{path}.{uuid.uuid4().hex[:8]}.stale"
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return
    if _read(aside) != record:
        try:
            os.link(aside, path)  # not the ended run's lock: restore it (unless yet another run has created one)
        except FileExistsError:
            pass
    os.remove(aside)


def _refusal(key: str, folder: str, path: str, owner: Dict) -> OutputInUseError:
    if owner.get("host") != host_name():
        unprobed = "; if that run has ended (it ran on another machine), delete "
    else:
        unprobed = "; if that run has ended, delete " if os.name != "posix" else ""
    return OutputInUseError(
        f"{key} {folder} is in use by another run ({describe_owner(owner)}); two runs in one folder overwrite each "
        f"other's checkpoints, metrics and logs. Wait for that run to end, or set {key} to another folder"
        + (f"{unprobed}{path}." if unprobed else "."))


def acquire_run_lock(folder: str, key: str = "OUTPUT_DIR") -> RunLock:
    """Take the run lock of ``folder`` (created if absent); see the module docstring.

    Args:
        folder: the run's output folder.
        key: how messages name the folder (``OUTPUT_DIR``, ``train.output_dir``, ``--work-dir``).

    Raises:
        OutputInUseError: a live run holds the folder.
        NotADirectoryError: ``folder`` is a file.
    """
    folder = os.path.abspath(os.path.expanduser(folder))
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise NotADirectoryError(f"{key} {folder} is a file, not a folder: set {key} to a folder (a new one, or the "
                                 "folder of an earlier run).")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, LOCK_NAME)
    if path in _HELD:
        _HELD[path].depth += 1
        return _HELD[path]
    pid = os.getpid()
    record = {"pid": pid, "host": host_name(), "started": process_start_time(pid), "token": uuid.uuid4().hex,
              "since": datetime.datetime.now().isoformat(timespec="seconds"), "command": " ".join(sys.argv)}
    taken_over = None
    for _ in range(10):  # each round either creates the lock or removes an ended run's lock
        if _create(path, record):
            if not _HELD:  # registered on the first lock, not on import (importing changes nothing in the process)
                atexit.unregister(_release_all)
                atexit.register(_release_all)
            lock = _HELD[path] = RunLock(path, record["token"], taken_over)
            return lock
        owner = _read(path)
        if owner is None:
            continue  # released meanwhile
        if owner and _live(owner):
            raise _refusal(key, folder, path, owner)
        taken_over = owner or {"pid": "?", "host": "?", "command": f"an unreadable {LOCK_NAME}"}
        _remove_if_unchanged(path, owner)
    raise OutputInUseError(f"{key} {folder}: could not take {path}, which other runs keep creating; try again.")


def acquire_in_main_process(folder: str, key: str, is_main: bool,
                            share: Callable[[Optional[str]], Optional[str]]) -> Optional[RunLock]:
    """:func:`acquire_run_lock` for a run of several processes: the main one takes the lock, ``share`` hands its
    refusal message (or None) to every process (a framework's broadcast), and every process raises when the main
    one was refused. Returns the lock in the main process, None in the others."""
    lock, error = None, None
    if is_main:
        try:
            lock = acquire_run_lock(folder, key)
        except (OutputInUseError, NotADirectoryError) as refused:
            error = refused
    message = share(str(error) if error else None)
    if error is not None:
        raise error
    if message:
        raise OutputInUseError(message)
    return lock


def release_run_lock(folder: str) -> None:
    """Release this process's lock of ``folder``, if it holds one (all its nested acquisitions)."""
    lock = _HELD.get(os.path.join(os.path.abspath(os.path.expanduser(folder)), LOCK_NAME))
    if lock is not None:
        lock.depth = 1
        lock.release()


def _release_all() -> None:
    """Runs that end without releasing (an uncaught error, sys.exit) still leave their folder free."""
    for lock in list(_HELD.values()):
        release_run_lock(os.path.dirname(lock.path))


__all__ = ["LOCK_NAME", "OutputInUseError", "RunLock", "acquire_in_main_process", "acquire_run_lock",
           "describe_owner", "host_name",
           "process_running", "process_start_time", "release_run_lock"]
