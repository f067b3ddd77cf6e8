"""Shared helpers for the tests: random BN statistics (so eval-mode comparisons exercise every parameter)."""
import contextlib
import functools
import http.server
import sys
import threading
from pathlib import Path
from typing import Iterator

import pytest
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # tests run from a checkout even before `pip install -e .`
    sys.path.insert(0, str(ROOT))


def randomize_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm random affine parameters and running statistics, and every GroupNorm random affine
    parameters (a zero-initialised last norm, ``last_gamma``, would otherwise hide its block)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                n = module.num_features
                module.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                module.bias.copy_(torch.rand(n, generator=generator) - 0.5)
                module.running_mean.copy_(torch.rand(n, generator=generator) - 0.5)
                module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            elif isinstance(module, nn.GroupNorm) and module.affine:
                n = module.num_channels
                module.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                module.bias.copy_(torch.rand(n, generator=generator) - 0.5)
    return model


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """Max absolute difference relative to the max magnitude of the reference ``a``."""
    assert a.shape == b.shape, (a.shape, b.shape)
    return ((a - b).abs().max() / a.abs().max().clamp(min=1e-12)).item()


@pytest.fixture
def rng():
    return torch.Generator().manual_seed(1234)


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """A private torch hub cache for one test. Patches torch.hub's directory itself: TORCH_HOME alone is ignored
    once any code has called ``torch.hub.set_dir``."""
    directory = tmp_path / "torch_hub"
    monkeypatch.setattr(torch.hub, "_hub_dir", str(directory))
    return directory


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@contextlib.contextmanager
def serve_directory(directory) -> Iterator[str]:
    """Serve ``directory`` over HTTP on 127.0.0.1 (downloads without a network); yields the base URL."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                            functools.partial(_QuietHandler, directory=str(directory)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
