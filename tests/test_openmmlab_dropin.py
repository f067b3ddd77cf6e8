"""The drop-in contract: a backbone dict of mmdet's / mmseg's own ``ResNeSt`` with only ``type`` changed builds the
same network: every ResNeSt config shipped inside the installed mmdet and mmseg, and a table of argument
combinations. Same parameters (count, names through keymaps, trainability), same norm modes after ``train()``, same
outputs in eval and train mode given the same weights. ``open-mmlab://`` checkpoints resolve as mmengine resolves
them (offline: a local HTTP server and ``$MMENGINE_HOME/open_mmlab.json``)."""
import glob
import http.server
import json
import os
import threading
import warnings

import pytest
import torch
from mmdet.models.backbones import ResNeSt as MMDetResNeSt  # required, never skipped
from mmdet.registry import MODELS as MMDET_MODELS
from mmengine import Config
from mmengine.registry import DefaultScope
from mmengine.model import revert_sync_batchnorm
from mmseg.models.backbones import ResNeSt as MMSegResNeSt
from mmseg.registry import MODELS as MMSEG_MODELS
from torch import nn

import mmdet
import mmseg
import resnest_backbones.mmdet  # noqa: F401  registers ResNeStBackbone (mmdet defaults)
import resnest_backbones.mmseg  # noqa: F401  registers ResNeStBackbone (mmseg defaults)
from conftest import rel_err
from resnest_backbones import keymaps

FRAMEWORKS = {"mmdet": (mmdet, MMDET_MODELS, MMDetResNeSt), "mmseg": (mmseg, MMSEG_MODELS, MMSegResNeSt)}
SHIPPED = [(name, path) for name, (package, _, _) in FRAMEWORKS.items()
           for path in sorted(glob.glob(os.path.join(os.path.dirname(package.__file__), ".mim", "configs",
                                                     "resnest", "*.py")))]


def randomize(model: nn.Module, seed: int) -> nn.Module:
    """Random norm parameters and statistics (BN and GN) and attention biases on top of the model's own random
    convolution weights, so that every tensor matters in the comparison (and deep nets stay finite)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in sorted(model.state_dict().items()):
            if tensor.is_floating_point() and tensor.dim() == 1:
                values = torch.rand(tensor.shape, generator=generator)
                tensor.copy_(values + 0.5 if name.endswith(("running_var", "weight")) else values - 0.5)
    return model


def _flags(model: nn.Module, names):
    """``{official parameter name: requires_grad}`` and the training flags of the norm layers, in order."""
    grads = {names(k): p.requires_grad for k, p in model.named_parameters()}
    modes = [m.training for m in model.modules() if isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.GroupNorm))]
    return grads, modes


def assert_same_network(framework: str, cfg: dict, size: int = 32, check_train: bool = True):
    """Build ``cfg`` as their ResNeSt and as ResNeStBackbone in the same registry; compare everything."""
    _, registry, _ = FRAMEWORKS[framework]
    # In the framework's default scope, as its runner sets it (mmengine builds from the current scope's registry).
    with warnings.catch_warnings(), DefaultScope.overwrite_default_scope(framework):
        warnings.simplefilter("ignore")  # the deprecated 'pretrained' that mmseg's segmentors pass
        theirs = revert_sync_batchnorm(registry.build(dict(cfg)))  # SyncBN needs CUDA in forward
        ours = revert_sync_batchnorm(registry.build({**cfg, "type": "ResNeStBackbone"}))
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())
    theirs_state = randomize(theirs, seed=len(repr(cfg))).state_dict()
    assert set(keymaps.openmmlab_to_official(theirs_state)) == set(ours.state_dict())
    ours.load_state_dict(keymaps.openmmlab_to_official(theirs_state))  # strict
    for mode in (True, False, True):  # train() re-applies frozen stages and norm_eval; theirs returns None
        theirs.train(mode)
        ours.train(mode)
        assert _flags(ours, lambda k: k) == _flags(theirs, lambda k: next(iter(keymaps.openmmlab_to_official({k: 0}))))
    x = torch.randn(2, cfg.get("in_channels", 3), size, size, generator=torch.Generator().manual_seed(0))
    for mode in (False, True) if check_train else (False,):
        theirs.train(mode)
        ours.train(mode)
        with torch.no_grad():
            expected, got = theirs(x), ours(x)
        assert isinstance(got, tuple) and len(got) == len(expected)
        for a, b in zip(expected, got):
            assert torch.isfinite(a).all() and rel_err(a, b) <= 1e-5, (framework, cfg, mode)
    return theirs, ours


def shipped_backbone(framework: str, path: str) -> dict:
    """The config's merged ``model.backbone``, with the ``pretrained`` mmseg's EncoderDecoder passes to it."""
    model = Config.fromfile(path).model
    backbone = model.backbone.to_dict()
    if model.get("pretrained"):
        backbone["pretrained"] = model.pretrained
    return backbone


def test_every_shipped_resnest_config_is_found():
    # mmdet 3.3.0 and mmseg 1.2.2 each ship 8 ResNeSt configs; an empty glob must not pass the test below.
    assert [f for f, _ in SHIPPED].count("mmdet") == 8 and [f for f, _ in SHIPPED].count("mmseg") == 8


_CHECKED = {}


@pytest.mark.parametrize("framework,path", SHIPPED, ids=[os.path.basename(p)[:-3] for _, p in SHIPPED])
def test_shipped_config_builds_the_same_network(framework, path):
    backbone = shipped_backbone(framework, path)
    assert backbone["type"] == "ResNeSt"
    key = (framework, repr(sorted(backbone.items())))
    if key not in _CHECKED:  # the configs share three distinct backbone dicts: compare each once
        theirs, ours = assert_same_network(framework, backbone, size=32, check_train=False)
        _CHECKED[key] = (type(ours).__name__, ours.init_cfg == theirs.init_cfg)
    expected = {"mmdet": "MMDetResNeStBackbone", "mmseg": "MMSegResNeStBackbone"}[framework]
    assert _CHECKED[key] == (expected, True)  # the framework's class, with the same open-mmlab:// weights to load


# Argument combinations, small widths: each is what some mmdet / mmseg config can say.
ARGUMENTS = [
    ("mmdet", dict(depth=50, base_channels=4)),  # stem follows base_channels: 2, 2, 4
    ("mmdet", dict(depth=50, base_channels=8, groups=2, base_width=4)),  # width planes*4/8*2
    ("mmdet", dict(depth=50, base_channels=8, base_width=40)),  # groups == 1: base_width ignored
    ("mmdet", dict(depth=50, base_channels=8, stem_channels=6, radix=1, reduction_factor=2)),
    ("mmdet", dict(depth=50, base_channels=8, radix=4, avg_down_stride=False)),
    ("mmdet", dict(depth=50, base_channels=8, strides=(1, 2, 2, 1), dilations=(1, 1, 2, 2))),  # no contraction
    ("mmdet", dict(depth=50, base_channels=8, dilations=(1, 2, 1, 1))),  # strided and dilated at once
    ("mmdet", dict(depth=50, base_channels=8, num_stages=3, strides=(1, 2, 2), dilations=(1, 1, 1),
                   out_indices=(0, 2))),
    ("mmdet", dict(depth=50, base_channels=8, out_indices=(2, 0))),  # stage order, whatever the order given
    ("mmdet", dict(depth=50, base_channels=8, out_indices=(1,))),  # every stage built, as theirs
    ("mmdet", dict(depth=50, base_channels=16, norm_cfg=dict(type="GN", num_groups=4))),  # attention gn too
    ("mmdet", dict(depth=50, base_channels=8, in_channels=1, frozen_stages=2, norm_eval=False)),
    ("mmdet", dict(depth=50, base_channels=8, norm_cfg=dict(type="BN", requires_grad=False), frozen_stages=0)),
    ("mmdet", dict(depth=152, base_channels=4)),
    ("mmdet", dict(depth=200, base_channels=4, frozen_stages=4)),
    ("mmseg", dict(depth=50, base_channels=8)),  # stem stays 64: mmseg's default
    ("mmseg", dict(depth=50, base_channels=8, strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4))),  # no contraction
    ("mmseg", dict(depth=50, base_channels=8, strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4),
                   contract_dilation=True)),
    ("mmseg", dict(depth=50, base_channels=8, strides=(1, 2, 1, 1), dilations=(1, 1, 2, 2),
                   contract_dilation=True)),  # d // 2, not the previous stage's dilation
    ("mmseg", dict(depth=50, base_channels=8, dilations=(1, 1, 3, 1), contract_dilation=True)),  # 3 // 2
    ("mmseg", dict(depth=50, base_channels=8, strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4),
                   contract_dilation=True, multi_grid=(1, 2, 4))),
    ("mmseg", dict(depth=50, base_channels=8, strides=(1, 2, 2, 1), dilations=(1, 1, 1, 2),
                   multi_grid=(1, 2, 4, 8))),  # entries past the last block ignored, as theirs
    ("mmseg", dict(depth=101, base_channels=8, stem_channels=16, norm_cfg=dict(type="GN", num_groups=2),
                   frozen_stages=1)),
]


@pytest.mark.parametrize("framework,cfg", ARGUMENTS, ids=[f"{f}-{i}" for i, (f, _) in enumerate(ARGUMENTS)])
def test_arguments_mean_what_they_mean_upstream(framework, cfg):
    assert_same_network(framework, dict(type="ResNeSt", **cfg))


# ---------------------------------------------------------------- open-mmlab:// checkpoints, offline
class _OneFile(http.server.BaseHTTPRequestHandler):
    payload = {}  # path -> bytes; what the test serves

    def do_GET(self):
        body = self.payload.get(self.path)
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, *args):
        pass


@pytest.fixture
def openmmlab_home(tmp_path, hub_cache, monkeypatch):
    """``$MMENGINE_HOME/open_mmlab.json`` pointing resnest50 to a loopback URL and resnest101 to a local file."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _OneFile)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    home = tmp_path / "mmengine_home"
    home.mkdir()
    (home / "open_mmlab.json").write_text(json.dumps({
        "resnest50": f"http://127.0.0.1:{server.server_address[1]}/pretrain/resnest50_d2-00000000.pth",
        "resnest101": "resnest101_local.pth"}))
    monkeypatch.setenv("MMENGINE_HOME", str(home))
    yield home
    server.shutdown()
    server.server_close()


def _save_backbone(model: nn.Module, path) -> bytes:
    """As OpenMMLab publishes backbone weights: mmdet ResNeSt key names under 'state_dict'."""
    torch.save({"state_dict": model.state_dict()}, path)
    return path.read_bytes()


@pytest.mark.parametrize("how", ["init_cfg", "pretrained"])
def test_open_mmlab_url_loads_what_mmengine_loads_and_caches_there(how, openmmlab_home, tmp_path):
    source = randomize(MMDetResNeSt(depth=50, stem_channels=64, base_channels=16), seed=3)  # small, same code
    _OneFile.payload = {"/pretrain/resnest50_d2-00000000.pth": _save_backbone(source, tmp_path / "r50.pth")}
    name = "open-mmlab://resnest50"
    with DefaultScope.overwrite_default_scope("mmdet"):
        ours = MMDET_MODELS.build(dict(type="ResNeStBackbone", depth=50, stem_channels=64, base_channels=16, **(
            dict(init_cfg=dict(type="Pretrained", checkpoint=name)) if how == "init_cfg" else dict(pretrained=name))))
    ours.init_weights()
    cached = os.path.join(torch.hub.get_dir(), "checkpoints", "resnest50_d2-00000000.pth")
    assert os.path.isfile(cached)  # where mmengine's load_url caches it
    _OneFile.payload = {}  # from now on only the cache can answer
    theirs = MMDetResNeSt(depth=50, stem_channels=64, base_channels=16,
                          init_cfg=dict(type="Pretrained", checkpoint=name))
    theirs.init_weights()  # mmengine's own resolution finds the same cached file
    theirs.eval()  # returns None, as their ResNet.train does
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(theirs(x), ours.eval()(x)):
            assert rel_err(a, b) <= 1e-6


def test_open_mmlab_local_entry_and_unknown_name(openmmlab_home):
    source = randomize(MMSegResNeSt(depth=101, stem_channels=128, base_channels=8), seed=4)
    _save_backbone(source, openmmlab_home / "resnest101_local.pth")
    with DefaultScope.overwrite_default_scope("mmseg"):
        ours = MMSEG_MODELS.build(dict(type="ResNeStBackbone", depth=101, stem_channels=128, base_channels=8,
                                       init_cfg=dict(type="Pretrained", checkpoint="openmmlab://resnest101")))
        missing = MMSEG_MODELS.build(dict(type="ResNeStBackbone", depth=101, pretrained="open-mmlab://resnest1O1"))
    ours.init_weights()
    assert torch.equal(ours.conv1[0].weight, source.stem[0].weight)
    with pytest.raises(KeyError, match="not in mmengine's open-mmlab model table"):
        missing.init_weights()
