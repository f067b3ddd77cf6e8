"""Reading the OpenMMLab configs' `_base_` lists, shared by the mmdet and mmseg config tests."""
import ast
import importlib
import os
from typing import List


def base_list(path: str) -> List[str]:
    """The `_base_` list of a config file, as written."""
    with open(path) as f:
        tree = ast.parse(f.read())
    return next(ast.literal_eval(node.value) for node in tree.body
                if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "_base_")


def framework_config(name: str) -> str:
    """The file of an ``mmdet::...`` / ``mmseg::...`` config in the installed framework."""
    package, relative = name.split("::", 1)
    return os.path.join(os.path.dirname(importlib.import_module(package).__file__), ".mim", "configs", relative)
