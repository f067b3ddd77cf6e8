"""Narrow compatibility fixes for third-party packages on current numpy, applied only where they are needed."""
import contextlib
from typing import Iterator


@contextlib.contextmanager
def lvis_on_numpy2() -> Iterator[None]:
    """Let the ``lvis`` package (0.5.3, its latest release) evaluate on numpy >= 1.24, for the duration of a block.

    ``lvis/eval.py`` uses the alias ``np.float``, which numpy removed in 1.24. The alias (to the builtin ``float``,
    what it always meant) is defined on entry and removed again on exit unless it existed before, so numpy's
    namespace is unchanged outside the evaluation that needs it.
    """
    import numpy as np
    added = "float" not in np.__dict__
    if added:
        np.float = float
    try:
        yield
    finally:
        if added:
            del np.float
