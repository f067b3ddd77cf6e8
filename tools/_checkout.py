"""Imported first by every tool (``import _checkout``; Python puts ``tools/`` on ``sys.path`` when a script there
runs): the tool imports the package of the checkout it sits in (also without ``pip install -e .``, and before any
other installed copy), and idle OpenMP threads wait passively."""
import os
import sys

# Idle OpenMP threads sleep instead of spinning: on a small CPU shared with other work, spinning threads made a
# 2-thread training step 2-4x slower (measured on 2 cores). Must be set before torch loads OpenMP; override freely.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.isdir(os.path.join(CHECKOUT, "resnest_backbones")) and CHECKOUT not in sys.path:
    sys.path.insert(0, CHECKOUT)
