"""Argument types shared by the calibration command lines."""

from __future__ import annotations

import argparse

__all__ = ["image_size_arg"]


def image_size_arg(text: str) -> tuple[int, int]:
    """``"WIDTHxHEIGHT"`` -> ``(width, height)`` pixels; at least 64x48 (an ``argparse`` type)."""
    try:
        w, h = text.lower().split("x")
        size = (int(w), int(h))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}") from None
    if size[0] < 64 or size[1] < 48:
        raise argparse.ArgumentTypeError(f"image size {text} is too small (at least 64x48)")
    return size
