"""``init_cfg=dict(type='Pretrained', ...)`` and ``pretrained=`` for ``ResNeStBackbone``: every source the core
loader reads (paths, URLs, ``resnest://<variant>``, any layout in ``keymaps``), plus OpenMMLab's
``open-mmlab://<name>``, resolved and cached as mmengine resolves and caches it; loaded strictly, with the core's
restricted unpickler (``safe_pickle``: data only, mmengine training checkpoints included).
"""
import os
from typing import Dict, Union

import torch
from mmengine.dist import get_dist_info
from mmengine.logging import print_log
from torch import nn

from ..checkpoint import LoadReport, download, load_pretrained, load_state
from ..keymaps import unwrap

OPENMMLAB_PREFIXES = ("open-mmlab://", "openmmlab://")


def resolve_openmmlab(source: str) -> str:
    """Local file of ``open-mmlab://<name>`` (or ``openmmlab://``), found as mmengine 0.10's
    ``load_from_openmmlab`` finds it: the name (after mmengine's deprecated-name table) is looked up in mmengine's
    ``hub/openmmlab.json`` updated by ``$MMENGINE_HOME/open_mmlab.json``; a URL is downloaded once into the torch hub
    cache by the core's ``download`` (``<torch.hub.get_dir()>/checkpoints/<file name>``, where mmengine's ``load_url``
    puts it, unless a download from another URL holds that name; not hash-checked, as there; rank 0 first when
    distributed), any other entry is a file under the mmengine home.

    Raises:
        KeyError: the name is not in mmengine's table. FileNotFoundError: a local entry that does not exist.
    """
    from mmengine.runner.checkpoint import _get_mmengine_home, get_deprecated_model_names, get_external_models
    name = source.split("://", 1)[1]
    name = get_deprecated_model_names().get(name, name)
    urls = get_external_models()
    if name not in urls:
        close = sorted(key for key in urls if key.startswith(name[:6]))[:8]
        raise KeyError(f"{source}: {name!r} is not in mmengine's open-mmlab model table (mmengine/hub/openmmlab.json"
                       f" and $MMENGINE_HOME/open_mmlab.json); similar names: {close}")
    url = urls[name]
    if not url.startswith(("http://", "https://")):
        path = os.path.join(_get_mmengine_home(), url)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{source} resolves to {path} (mmengine home), which does not exist")
        return path
    rank, world_size = get_dist_info()
    for turn in (0, 1):  # rank 0 downloads, the others wait and then find the file
        if (rank == 0) == (turn == 0):
            try:
                # The core's cache: mmengine's place (<hub>/checkpoints/<file name>) unless another URL's download
                # holds that name (each download records its URL), so two sources are never confused.
                destination = download(url, progress=False, check_hash=False)
            except RuntimeError as error:
                raise RuntimeError(f"{source}: {error}") from None
        if world_size > 1 and turn == 0:
            torch.distributed.barrier()
    return destination


def load_init_cfg(model: nn.Module, cfg: Dict, name: str) -> LoadReport:
    """Apply ``dict(type='Pretrained', checkpoint=..., prefix=..., map_location=...)`` to ``model`` strictly."""
    unknown = set(cfg) - {"type", "checkpoint", "prefix", "map_location"}
    if unknown or "checkpoint" not in cfg:
        raise ValueError(f"init_cfg {cfg} must be dict(type='Pretrained', checkpoint=<path, URL, "
                         "'open-mmlab://resnest50' or 'resnest://resnest50'>, prefix=<optional, e.g. 'backbone.'>)")
    source: Union[str, Dict] = cfg["checkpoint"]
    if isinstance(source, str) and source.startswith(OPENMMLAB_PREFIXES):
        source = resolve_openmmlab(source)
    # The core's loader reads files with its restricted unpickler (mmengine training checkpoints included).
    if cfg.get("prefix"):
        source = _sub_state(load_state(source), cfg["prefix"], source)
    report = load_pretrained(model, source)
    print_log(f"ResNeStBackbone({name}): {report.summary()}", logger="current")
    return report


def _sub_state(checkpoint, prefix: str, source) -> Dict[str, torch.Tensor]:
    state = unwrap(checkpoint)  # the core's unwrapping: state_dict / model wrappers, DataParallel prefix
    sub = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not sub:
        raise ValueError(f"No key of {source} starts with prefix {prefix!r}; first keys: {list(state)[:5]}")
    return sub
