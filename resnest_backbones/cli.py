"""What every command-line tool of the project shares: a user error is one message on stderr and a non-zero exit
status, not a traceback; ``--debug`` shows the traceback instead.

    parser = argparse.ArgumentParser(...)
    add_debug_option(parser)
    sys.exit(run(main, parser))      # main(args) -> exit status or None
"""
import argparse
import os
import sys
from typing import Callable, List, Optional


def add_debug_option(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--debug", action="store_true",
                        help="on an error, show the full Python traceback instead of a one-line message")
    return parser


def error_message(error: BaseException) -> str:
    """The text of ``error`` as a user should read it (``KeyError`` quotes its message; this does not)."""
    if isinstance(error, KeyError) and len(error.args) == 1 and isinstance(error.args[0], str):
        return error.args[0]
    return str(error) or type(error).__name__


def same_file(a: str, b: str) -> bool:
    """Whether two paths name one file (also through symlinks, relative paths and hard links)."""
    if os.path.exists(a) and os.path.exists(b):
        return os.path.samefile(a, b)
    return os.path.realpath(a) == os.path.realpath(b)


def refuse_overwriting_input(output: str, flag: str, source: str) -> None:
    """Raise when the tool's ``output`` is its input file ``source`` (given as ``flag``): inputs are never
    overwritten."""
    if os.path.exists(source) and same_file(source, output):
        raise ValueError(f"The output {output} is the input file {source} ({flag}); choose another output path "
                         "(a tool never overwrites its input).")


def refuse_existing_output(path: str, overwrite: bool, flag: str = "--overwrite") -> None:
    """Raise when the tool would write over an existing ``path`` without ``overwrite`` (given on the command line
    as ``flag``): a tool replaces a file only when asked to."""
    if not overwrite and os.path.lexists(path):
        raise FileExistsError(f"{path} exists; pass {flag} to replace it, or choose another output")


def run(main: Callable[[argparse.Namespace], Optional[int]], parser: argparse.ArgumentParser,
        argv: Optional[List[str]] = None) -> int:
    """Parse ``argv`` and call ``main(args)``; returns the exit status (1 after an error, printed as one message).

    Usage errors (bad flags) stay argparse's (exit status 2). With ``--debug`` an error propagates with its
    traceback.
    """
    args = parser.parse_args(argv)
    try:
        return main(args) or 0
    except Exception as error:  # every failure of a tool run is reported the same way; --debug for the details
        if getattr(args, "debug", False):
            raise
        print(f"{parser.prog}: error: {error_message(error)}\n(run with --debug to see the traceback)",
              file=sys.stderr)
        return 1


__all__ = ["add_debug_option", "error_message", "refuse_existing_output", "refuse_overwriting_input", "run",
           "same_file"]
