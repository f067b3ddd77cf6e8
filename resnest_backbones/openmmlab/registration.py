"""Registering this package's classes in mmengine-style registries, idempotently."""

# The name configs use (``type='ResNeStBackbone'``): mmdet and mmseg register a ``ResNeSt`` of their own.
REGISTERED_NAME = "ResNeStBackbone"


def register(registry, module: type, name: str = None) -> None:
    """Register ``module`` under ``name`` (default: its class name) unless another class holds that name; a class
    of the same module path (``importlib.reload``) is replaced."""
    name = name or module.__name__
    registered = registry.get(name)
    if registered is None or (registered.__module__, registered.__qualname__) == (module.__module__,
                                                                                  module.__qualname__):
        registry.register_module(name=name, module=module, force=True)
