#!/usr/bin/env python
"""GMACs, latency and training memory of every published variant, drawn: see
resnest_backbones/apps/benchmark/variant_sweep.py (``python tools/benchmark_variants.py --help``)."""
import _checkout  # noqa: F401  (first: a checkout without pip install; OMP_WAIT_POLICY)

from resnest_backbones.apps.benchmark.variant_sweep import main

if __name__ == "__main__":
    main()
