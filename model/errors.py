"""Error types shared by every part of the package."""

from __future__ import annotations

import os


class FormatError(ValueError):
    """A file that cannot be used: names the file, the key and the problem.

    ``str(err)`` reads ``"<file>: <key>: <problem>"`` so a user sees at once what to fix.
    """

    def __init__(self, path: str | os.PathLike[str] | None, key: str | None, problem: str) -> None:
        self.path = None if path is None else str(path)
        self.key = key
        self.problem = problem
        parts = [p for p in (self.path, key) if p]
        super().__init__(": ".join(parts + [problem]))


class CheckpointError(ValueError):
    """A checkpoint that cannot be used here (unreadable, other lens, other format)."""
