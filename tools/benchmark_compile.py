#!/usr/bin/env python
"""The ``torch.compile``d training step of our ResNeSt-50 against compiled peers: see
resnest_backbones/apps/benchmark/compile.py (``python tools/benchmark_compile.py --help``)."""
import _checkout  # noqa: F401  (first: a checkout without pip install; OMP_WAIT_POLICY)

from resnest_backbones.apps.benchmark.compile import main

if __name__ == "__main__":
    main()
