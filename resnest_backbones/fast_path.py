"""Deprecated module name (until the next release): use :mod:`resnest_backbones.fast_inference`."""
import warnings

from .fast_inference import FastInferenceError, FusedModuleError, fuse_for_inference, to_fast_inference  # noqa: F401

warnings.warn("resnest_backbones.fast_path is deprecated, use resnest_backbones.fast_inference", DeprecationWarning,
              stacklevel=2)
