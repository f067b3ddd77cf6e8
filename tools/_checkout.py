"""Imported first by the detectron2 tools (``import _checkout``; Python puts ``tools/`` on ``sys.path`` when a script
there runs): run them from a checkout without ``pip install -e .``, and set how idle OpenMP threads wait."""
import os
import sys

# Idle OpenMP threads sleep instead of spinning: on a small CPU shared with other work, spinning threads made a
# 2-thread training step 2-4x slower (measured on 2 cores). Must be set before torch loads OpenMP; override freely.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

try:
    import resnest_backbones  # noqa: F401
except ImportError:  # a checkout without `pip install -e .`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
