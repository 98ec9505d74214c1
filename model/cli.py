"""Helpers shared by the command-line tools: clean errors, exit codes, logging setup."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from typing import Any, Callable, Iterable, NoReturn

from model.errors import CheckpointError, FormatError

__all__ = ["UsageError", "run_cli", "fail", "setup_logging", "parse_option", "parse_options"]


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


_SIZE = re.compile(r"^\s*(\d+)\s*[xX\u00d7]\s*(\d+)\s*$")


def parse_option(text: str, flag: str = "--camera-opt") -> tuple[str, Any]:
    """Parse one ``KEY=VALUE`` option, the grammar every tool's ``--camera-opt`` uses.

    ``VALUE`` is read as JSON where it is JSON (``5``, ``0.5``, ``true``, ``[640, 480]``, ``"text"``;
    lists become tuples), ``WIDTHxHEIGHT`` (``640x480``) as a ``(width, height)`` tuple of ints,
    ``True``/``False`` in any case as a bool, and anything else as the plain string
    (``vcm=ak7375``, ``device=/dev/video2``). A ``size`` (or ``*_size``) must be two positive integers.

    Raises:
        UsageError: no ``=``, a key that is not a name, or a size that is not ``WIDTHxHEIGHT``; the
            message names ``flag`` and the text.
    """
    if "=" not in text:
        raise UsageError(f"{flag} expects KEY=VALUE (e.g. size=640x480), got {text!r}")
    k, v = text.split("=", 1)
    k = k.strip()
    if not k.isidentifier():
        raise UsageError(f"{flag} {text!r}: bad key {k!r} (letters, digits and _ only)")
    v = v.strip()
    m = _SIZE.match(v)
    val: Any
    if m:
        val = (int(m.group(1)), int(m.group(2)))
    elif v.lower() in ("true", "false"):
        val = v.lower() == "true"
    else:
        try:
            val = json.loads(v)
        except ValueError:
            val = v
        if isinstance(val, list):
            val = tuple(val)
    if k == "size" or k.endswith("_size"):  # an image size is always (width, height) pixels
        if not (isinstance(val, tuple) and len(val) == 2
                and all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in val)):
            raise UsageError(f"{flag} {text!r}: expected WIDTHxHEIGHT in pixels, e.g. {k}=640x480")
    return k, val


def parse_options(items: Iterable[str], flag: str = "--camera-opt") -> dict[str, Any]:
    """Parse repeated ``KEY=VALUE`` options (see :func:`parse_option`) into a dict; a repeated key keeps the last."""
    return dict(parse_option(t, flag) for t in items)
