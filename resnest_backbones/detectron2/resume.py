"""What ``--resume`` and ``--eval-only`` check about the weights they load (used by ``ResNeStCheckpointer``).

A run resumed with another config than the one that wrote its output folder (another variant, another optimizer)
used to fail on raw errors: torch's "loaded state dict contains a parameter group that doesn't match", or a
``KeyError: 'momentum'`` at the first step (the saved AdamW groups, loaded into SGD without complaint), or, worse,
to go on with blocks the checkpoint lacks left at their initialisation. :func:`check_resumable` compares the
checkpoint with the model and the optimizer before anything is loaded into the optimizer, and says that the output
folder holds a run made with another config.
"""
import re
from collections import OrderedDict
from typing import Any, List, Mapping, Optional, Sequence

from torch import nn


# What torch's LR schedulers add to an optimizer's parameter groups (detectron2 builds some schedulers after loading).
_SCHEDULER_KEYS = {"initial_lr", "max_lr", "min_lr", "max_momentum", "base_momentum"}


class ResumeMismatchError(RuntimeError):
    """The last checkpoint of the output folder does not fit this run's model or optimizer."""


def weight_keys(model: nn.Module) -> List[str]:
    """The keys of ``model``'s state dict that a checkpoint must provide (``num_batches_tracked`` aside)."""
    return [key for key in model.state_dict() if not key.endswith("num_batches_tracked")]


def group_keys(keys: Sequence[str], backbone_prefix: Optional[str] = None, most: int = 8) -> str:
    """``keys`` summarised by module, e.g. ``"roi_heads.box_predictor (4), backbone.bottom_up.layer3 (120)"``: the
    first two names of a key (numbered siblings such as ``fpn_lateral2``..``5`` together), or the stage inside the
    ResNeSt backbone (``backbone_prefix``)."""
    groups: "OrderedDict[str, int]" = OrderedDict()
    for key in keys:
        if backbone_prefix and key.startswith(backbone_prefix):
            group = backbone_prefix + key[len(backbone_prefix):].split(".", 1)[0]
        else:
            group = ".".join(re.sub(r"(?<=\D)\d+$", "", name) for name in key.split(".")[:2])
        groups[group] = groups.get(group, 0) + 1
    listed = [f"{group} ({count})" for group, count in groups.items()]
    return ", ".join(listed[:most]) + (f" and {len(listed) - most} more" if len(listed) > most else "")


def _param_group_differences(current: Sequence[Mapping], saved: Any, path: str) -> List[str]:
    if not isinstance(saved, (list, tuple)):
        return [f"{path}: no parameter groups saved"]
    if len(saved) != len(current):
        return [f"{path}: {len(saved)} parameter groups saved, {len(current)} now"]
    found = []
    for index, (now, then) in enumerate(zip(current, saved)):
        if len(now.get("params", [])) != len(then.get("params", [])):
            found.append(f"{path} group {index}: {len(then.get('params', []))} parameters saved, "
                         f"{len(now.get('params', []))} now")
        # Another optimizer class has settings of its own on both sides (SGD's momentum, AdamW's betas); one side
        # alone may hold more because an LR scheduler added some or another torch version has a new option.
        added, gone = sorted(set(now) - set(then) - _SCHEDULER_KEYS), sorted(set(then) - set(now) - _SCHEDULER_KEYS)
        if added and gone:
            found.append(f"{path} group {index}: saved by another optimizer (its settings {gone}, this one's "
                         f"{added})")
    return found


def optimizer_differences(current: Any, saved: Any, path: str) -> List[str]:
    """Where the optimizer states inside ``saved`` (a checkpointable's saved state) do not fit those inside
    ``current`` (its state now): group count, parameters per group, hyper-parameter names."""
    if not (isinstance(current, Mapping) and isinstance(saved, Mapping)):
        return []
    if "param_groups" in current and "state" in current:
        return _param_group_differences(current["param_groups"], saved.get("param_groups"), path)
    return [found for key in current if key in saved
            for found in optimizer_differences(current[key], saved[key], f"{path}.{key}")]


def check_resumable(checkpointer, checkpoint: Mapping, prefix: Optional[str], unexpected: Sequence[str] = ()) -> None:
    """Raise :class:`ResumeMismatchError` when the checkpoint being resumed did not fill the model
    (``checkpointer.unloaded``), holds weights the model lacks (``unexpected``), or holds optimizer states of another
    optimizer or other parameters. Called after the model is loaded, before the checkpointables are; ``prefix``: the
    ResNeSt backbone's in the model's state dict."""
    problems = []
    if checkpointer.unloaded:
        problems.append(f"it leaves {len(checkpointer.unloaded)} tensors of this model unloaded: "
                        f"{group_keys(checkpointer.unloaded, prefix)}")
    if unexpected:
        problems.append(f"it holds {len(unexpected)} tensors this model lacks: {group_keys(unexpected)}")
    for key, obj in checkpointer.checkpointables.items():
        if key in checkpoint and hasattr(obj, "state_dict"):
            problems += optimizer_differences(obj.state_dict(), checkpoint[key], key)
    if problems:
        raise ResumeMismatchError(
            f"Cannot resume from {checkpointer.loaded_from}: the output folder {checkpointer.save_dir} holds a run "
            f"made with another config ({'; '.join(problems[:4])}). Resume with the config of that run, or start "
            "this config in another output folder.")


__all__ = ["ResumeMismatchError", "check_resumable", "group_keys", "optimizer_differences", "weight_keys"]
