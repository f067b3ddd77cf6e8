"""Narrow compatibility fixes for third-party packages on current numpy, applied only where they are needed."""
import contextlib
from typing import Iterator


def enable_lvis_on_numpy2() -> None:
    """Let the ``lvis`` package (0.5.3, its latest release) evaluate on numpy >= 1.24.

    ``lvis/eval.py`` uses the alias ``np.float``, which numpy removed in 1.24. Restoring that one alias (to the
    builtin ``float``, what it always meant) is the narrowest fix; call this before running an LVIS evaluation.
    """
    import numpy as np
    if "float" not in np.__dict__:
        np.float = float


@contextlib.contextmanager
def lvis_on_numpy2() -> Iterator[None]:
    """``enable_lvis_on_numpy2`` for the duration of a block only: the alias is removed again afterwards (unless it
    existed before), so numpy's namespace is unchanged outside the evaluation that needs it."""
    import numpy as np
    added = "float" not in np.__dict__
    enable_lvis_on_numpy2()
    try:
        yield
    finally:
        if added:
            del np.float
