"""Shapes and focus distances shared by the export tests (a module of its own: `conftest` is ambiguous)."""

SIZE = (48, 40)  # (W, H): a multiple of the tiny net's 4, so the traced graph needs no padding
FOCUS = [1.0, 1.5, 2.5, 4.0, 6.0]
RADIUS = 6
