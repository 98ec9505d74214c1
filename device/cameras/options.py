"""Backend option dataclasses that reject unknown keys (picamera2 style: configs are checked up front)."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, TypeVar

__all__ = ["from_opts"]

T = TypeVar("T")


def from_opts(cls: type[T], opts: dict[str, Any], what: str) -> T:
    """Build the dataclass ``cls`` from ``opts``; unknown keys raise ``TypeError`` listing the known ones."""
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    bad = sorted(set(opts) - known)
    if bad:
        raise TypeError(f"unknown {what} option(s) {', '.join(bad)}; known: {', '.join(sorted(known))}")
    obj = cls(**opts)
    validate = getattr(obj, "validate", None)
    if validate is not None:
        validate()
    return obj
