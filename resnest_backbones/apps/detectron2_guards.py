"""What ``tools/train_net.py`` and ``tools/lazyconfig_train_net.py`` check before and while they run.

- **One run per output folder**: the main process takes the folder's run lock (``resnest_backbones.ownership``)
  before anything is written, and every process learns whether it got it; a live run's folder is refused.
- **--eval-only evaluates trained weights**: no weights at all, or weights that leave any part of the detector at its
  initialisation (a checkpoint of another variant, a backbone-only checkpoint), are refused, naming the parts;
  ``--allow-partial-weights`` evaluates anyway (detectron2's own behaviour).
- **--resume after a config change**: the output folder's ``config.yaml`` (the run's config, which detectron2's
  ``default_setup`` overwrites) is read first; when the checkpoint does not fit (``ResumeMismatchError``), it is put
  back and the message lists what changed.
- **Config files**: malformed YAML is reported with its file, line and column.
"""
import os
from typing import Callable, List, Optional

import yaml
from detectron2.utils import comm

from ..atomic_io import atomic_write
from ..checkpoint import CheckpointMismatchError
from ..detectron2.resume import ResumeMismatchError, group_keys, weight_keys
from ..ownership import RunLock, acquire_in_main_process

ALLOW_PARTIAL = "--allow-partial-weights"


class IncompleteWeightsError(CheckpointMismatchError):
    """``--eval-only`` would evaluate parameters that no checkpoint set."""


def hold_output_dir(folder: str, key: str) -> Optional[RunLock]:
    """Take ``folder``'s run lock in the main process; in every process, raise if the main one could not. Returns
    the lock (None outside the main process)."""
    def share(message: Optional[str]) -> Optional[str]:
        return comm.all_gather(message)[0] if comm.get_world_size() > 1 else message
    return acquire_in_main_process(folder, key, comm.is_main_process(), share)


def read_yaml_config(read: Callable, config_file: str):
    """``read()`` (a config loader), with a YAML syntax error reported as one message naming the file and line."""
    try:
        return read()
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ValueError(f"--config-file {config_file} is not valid YAML{where}: {problem}. Fix the file (yaml "
                         "syntax: `KEY: value`, two-space indentation).") from None


def require_full_weights(checkpointer, key: str, output_dir: str) -> None:
    """Refuse to evaluate when ``checkpointer`` loaded nothing, or left model tensors unloaded (see the module
    docstring); ``key`` names the weights setting (``MODEL.WEIGHTS``, ``train.init_checkpoint``)."""
    if checkpointer.loaded_from is None:
        raise IncompleteWeightsError(
            f"--eval-only needs the detector's trained weights, but none were loaded ({key} is empty, and no "
            f"checkpoint of {output_dir} was resumed): every parameter would be at its random initialisation. Set "
            f"{key} to a checkpoint of this detector (e.g. the model_final.pth of its training), or pass "
            f"{ALLOW_PARTIAL} to evaluate anyway.")
    if not checkpointer.unloaded:
        return
    from ..detectron2 import find_resnest
    prefix, _ = find_resnest(checkpointer.model)
    backbone_only = prefix and not any(k.startswith(prefix) for k in checkpointer.unloaded)
    total = len(weight_keys(checkpointer.model))
    raise IncompleteWeightsError(
        f"--eval-only: {key} {checkpointer.loaded_from} leaves {len(checkpointer.unloaded)} of {total} tensors of "
        "the detector at their random initialisation"
        + (" (it holds the backbone only)" if backbone_only else "")
        + f": {group_keys(checkpointer.unloaded, prefix)}. "
        f"Set {key} to a checkpoint of this detector made with this config (e.g. the same MODEL.RESNEST.VARIANT), or "
        f"pass {ALLOW_PARTIAL} to evaluate anyway.")


def previous_config(output_dir: str, resume: bool) -> Optional[bytes]:
    """The ``config.yaml`` of the run in ``output_dir`` when resuming (before ``default_setup`` replaces it)."""
    path = os.path.join(output_dir, "config.yaml")
    if resume and comm.is_main_process() and os.path.isfile(path):
        with open(path, "rb") as handle:
            return handle.read()
    return None


def _flatten(node, prefix: str = "") -> dict:
    if isinstance(node, dict):
        return {k: v for name, child in node.items() for k, v in _flatten(child, f"{prefix}{name}.").items()}
    return {prefix[:-1]: node}


def config_changes(previous: bytes, current_yaml: str, most: int = 8) -> List[str]:
    """``KEY old -> new`` for every key whose value differs between two yacs configs dumped as YAML."""
    try:
        old, new = _flatten(yaml.safe_load(previous)), _flatten(yaml.safe_load(current_yaml))
    except yaml.YAMLError:
        return []
    changed = [f"{key} {old.get(key)!r} -> {new.get(key)!r}" for key in sorted(set(old) | set(new))
               if old.get(key) != new.get(key)]
    return changed[:most] + ([f"{len(changed) - most} more"] if len(changed) > most else [])


def explain_resume_mismatch(error: ResumeMismatchError, output_dir: str, previous: Optional[bytes],
                            current_yaml: Optional[str]) -> ResumeMismatchError:
    """``error`` with the config changes since the run in ``output_dir``, whose ``config.yaml`` is put back."""
    if previous is None:
        return error
    atomic_write(os.path.join(output_dir, "config.yaml"), lambda handle: handle.write(previous))
    changes = config_changes(previous, current_yaml) if current_yaml is not None else []
    listed = f" Changed since that run: {'; '.join(changes)}." if changes else ""
    return ResumeMismatchError(f"{error}{listed} That run's config: {os.path.join(output_dir, 'config.yaml')}.")


__all__ = ["ALLOW_PARTIAL", "IncompleteWeightsError", "config_changes", "explain_resume_mismatch",
           "hold_output_dir", "previous_config", "read_yaml_config", "require_full_weights"]
