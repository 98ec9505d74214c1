"""Helpers shared by the command-line tools: clean errors, exit codes, logging setup."""

from __future__ import annotations

import logging
import os
import sys
from typing import Callable, NoReturn

from model.errors import CheckpointError, FormatError

__all__ = ["UsageError", "run_cli", "fail", "setup_logging"]


class UsageError(ValueError):
    """Bad command-line input: printed as ``error: ...`` with exit code 2."""


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: message`` to stderr and exit with ``code``."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


def setup_logging(verbose: bool = False) -> None:
    """Log to stderr, INFO (or DEBUG with ``verbose``)."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def run_cli(main: Callable[[], int | None]) -> NoReturn:
    """Run a CLI ``main``; turn expected errors into one line on stderr and an exit code, never a traceback.

    Exit codes: 0 success, 1 runtime failure (disk full, unexpected error), 2 bad input, 130 Ctrl-C.
    Set ``DAIF_DEBUG=1`` to see the full traceback of unexpected errors.
    """
    try:
        code = main()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130)
    except (FormatError, CheckpointError, UsageError, FileExistsError, FileNotFoundError) as e:
        fail(str(e), 2)
    except ValueError as e:
        fail(str(e), 2)
    except OSError as e:
        fail(f"{e.filename + ': ' if getattr(e, 'filename', None) else ''}{e.strerror or e}", 1)
    except SystemExit:
        raise
    except Exception as e:  # noqa: BLE001 - last resort: one line, not a traceback
        if os.environ.get("DAIF_DEBUG"):
            raise
        fail(f"unexpected {type(e).__name__}: {e} (set DAIF_DEBUG=1 for a traceback)", 1)
    raise SystemExit(code or 0)
