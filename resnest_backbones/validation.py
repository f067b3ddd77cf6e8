"""The one place where ``ResNeSt``'s arguments are checked, whatever the entry point (``ResNeSt(...)``,
``create_model``, ``freeze``, the detectron2 keys, the OpenMMLab arguments): each argument has one check for its
type and range, :func:`check_arguments` runs them all, then the checks that relate arguments to each other.

Every error is a ``ValueError`` whose message starts with the argument's name (the detectron2 adapter prefixes the
config key that sets it) and says what to write instead.
"""
import difflib
import numbers
from typing import Any, Callable, Dict, Iterable, Optional, Sequence

STAGE_NAMES = ("res2", "res3", "res4", "res5")
# The values of ``dilated_layout``: how the first block of a dilated (stride-1) stage is laid out.
DILATED_LAYOUTS = {
    #            avd pool in that block   downsample pool before the shortcut conv
    "official": dict(dilated_avd=True, dilated_downsample_pool="identity"),
    "mmseg": dict(dilated_avd=False, dilated_downsample_pool="identity"),
    "timm": dict(dilated_avd=False, dilated_downsample_pool="avg2x2_same"),
}
OUTPUT_STRIDES = (8, 16, 32)


def _kind(value: Any) -> str:
    return f"the string {value!r}" if isinstance(value, str) else f"{value!r} ({type(value).__name__})"


def check_integer(name: str, value: Any, minimum: int = 1, maximum: Optional[int] = None) -> None:
    """``value`` is an ``int`` (not a bool) in ``[minimum, maximum]``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum or \
            (maximum is not None and value > maximum):
        bound = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        hint = f"; write {name}={int(value)} without quotes" if isinstance(value, str) and value.strip().lstrip(
            "-").isdigit() else ""
        raise ValueError(f"{name} must be an integer {bound}, got {_kind(value)}{hint}")


def check_boolean(name: str, value: Any) -> None:
    """``value`` is ``True`` or ``False``: a string such as ``'False'`` (an unparsed yaml or command-line value) would
    be taken as true by Python, so it is refused."""
    if not isinstance(value, bool):
        hint = " (a yaml or command-line value that was not parsed as a boolean: write True or False without quotes)" \
            if isinstance(value, str) else ""
        raise ValueError(f"{name} must be True or False, got {_kind(value)}{hint}")


def check_probability(name: str, value: Any) -> None:
    """``value`` is a real number in ``[0, 1)``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1) (0 switches it off), got {_kind(value)}")


def check_choice(name: str, value: Any, choices: Iterable) -> None:
    choices = tuple(choices)
    if isinstance(value, bool) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {_kind(value)}")


def _sequence(name: str, value: Any, example: str) -> list:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ValueError(f"{name} must be a list of integers, e.g. {example}, got {_kind(value)}")
    return list(value)


def check_integers(name: str, value: Any, example: str, length: Optional[int] = None, minimum: int = 1) -> None:
    """``value`` is a list or tuple of integers >= ``minimum`` (of ``length`` entries when given)."""
    values = _sequence(name, value, example)
    if length is not None and len(values) != length:
        raise ValueError(f"{name} must have {length} entries, e.g. {example}, got {value!r}")
    for index, entry in enumerate(values):
        check_integer(f"{name}[{index}]", entry, minimum)


def check_stage_names(name: str, value: Any) -> None:
    """A non-empty list of ``res2..res5``."""
    if isinstance(value, str):
        raise ValueError(f"{name} must be a list of stage names, got the string {value!r}; write [{value!r}]")
    values = _sequence(name, value, "['res4', 'res5']")
    unknown = [entry for entry in values if entry not in STAGE_NAMES]
    if unknown or not values:
        raise ValueError(f"{name} {values} must be a non-empty subset of {list(STAGE_NAMES)}")


def _optional(check: Callable[..., None]) -> Callable[..., None]:
    def check_unless_none(name: str, value: Any) -> None:
        if value is not None:
            check(name, value)
    return check_unless_none


def _positive(name: str, value: Any) -> None:
    check_integer(name, value, 1)


def _count(name: str, value: Any) -> None:
    check_integer(name, value, 0)


# One check per argument of ``ResNeSt`` (norm layers are checked where they are built: ``layers.make_norm_layer``).
CHECKS: Dict[str, Callable[[str, Any], None]] = {
    "layers": lambda n, v: check_integers(n, v, "[3, 4, 6, 3] (blocks in res2..res5)", length=4),
    "radix": _count,
    "cardinality": _positive, "base_width": _positive, "stem_width": _positive, "reduction_factor": _positive,
    "in_channels": _positive, "base_channels": _positive, "num_classes": _count,
    "deep_stem": check_boolean, "avg_down": check_boolean, "avd": check_boolean, "avd_first": check_boolean,
    "last_gamma": check_boolean, "norm_eval": check_boolean, "with_cp": check_boolean,
    "contract_dilation": check_boolean,
    "drop_block_prob": check_probability, "final_drop": check_probability,
    "output_stride": lambda n, v: check_choice(n, v, OUTPUT_STRIDES),
    "dilated_layout": lambda n, v: check_choice(n, v, DILATED_LAYOUTS),
    "out_features": check_stage_names,
    "frozen_stages": lambda n, v: check_integer(n, v, -1, 4),
    "num_stages": _optional(lambda n, v: check_integer(n, v, 1, 4)),
    "strides": _optional(lambda n, v: check_integers(n, v, "(1, 2, 2, 2)")),
    "dilations": _optional(lambda n, v: check_integers(n, v, "(1, 1, 2, 4)")),
    "multi_grid": _optional(lambda n, v: check_integers(n, v, "(1, 2, 4)")),
}


def check_argument(name: str, value: Any) -> None:
    """The check of one argument (``freeze`` re-checks ``frozen_stages`` with it)."""
    CHECKS[name](name, value)


def check_names(given: Iterable[str], valid: Iterable[str], owner: str = "ResNeSt") -> None:
    """TypeError for argument names that ``owner`` does not take, with the closest valid name."""
    valid = sorted(valid)
    unknown = [name for name in given if name not in valid]
    if not unknown:
        return
    hints = []
    for name in unknown:
        close = difflib.get_close_matches(name, valid, 1)
        hints.append(f"{name!r} (did you mean {close[0]!r}?)" if close else repr(name))
    raise TypeError(f"{owner} got unknown argument(s) {', '.join(hints)}. Valid arguments: {', '.join(valid)}")


def check_arguments(arguments: Dict[str, Any]) -> None:
    """Check every argument of ``arguments`` (names of :data:`CHECKS`), then how they combine."""
    for name, value in arguments.items():
        if name in CHECKS:
            CHECKS[name](name, value)
    _check_combinations(arguments)


def _check_combinations(a: Dict[str, Any]) -> None:
    built = stages_built(a["num_stages"], a["num_classes"], a["out_features"])
    last = max(STAGE_NAMES.index(f) for f in a["out_features"])
    if last >= built:
        raise ValueError(f"out_features {list(a['out_features'])} needs stage {STAGE_NAMES[last]}, but num_stages="
                         f"{a['num_stages']} builds only {list(STAGE_NAMES[:built])}")
    strides, dilations = a["strides"], a["dilations"]
    if (strides is None) != (dilations is None) or (strides is not None and a["output_stride"] != 32):
        raise ValueError("strides and dilations go together, or output_stride alone: e.g. strides=(1, 2, 1, 1), "
                         f"dilations=(1, 1, 2, 4); got strides={strides}, dilations={dilations}, "
                         f"output_stride={a['output_stride']}")
    if strides is not None and (len(strides) != len(dilations) or len(strides) < built):
        raise ValueError(f"strides {list(strides)} and dilations {list(dilations)} need one entry per stage "
                         f"({built} built)")
    multi_grid = a["multi_grid"]
    if multi_grid is not None and len(multi_grid) < a["layers"][built - 1]:
        raise ValueError(f"multi_grid {list(multi_grid)} needs one dilation per block of the last stage "
                         f"({a['layers'][built - 1]} blocks)")


def stages_built(num_stages: Optional[int], num_classes: int, out_features: Sequence[str]) -> int:
    """How many stages a ResNeSt builds: ``num_stages`` if given; all four for a classifier; else up to the last
    stage in ``out_features`` (DDP would complain about parameters that never get a gradient)."""
    if num_stages is not None:
        return num_stages
    return 4 if num_classes > 0 else max(STAGE_NAMES.index(f) for f in out_features) + 1
