"""Sensor noise for rendered stacks: signal-dependent shot noise plus read noise, optional quantisation.

For a linear intensity ``x`` in ``[0, 1]`` the noisy value is

    y = clip(x + sqrt(shot_gain * x + read_std**2) * n, 0, 1),     n ~ N(0, 1) per pixel and channel,

the Gaussian approximation of Poisson shot noise (``shot_gain`` = 1 / full-well electrons at value 1)
plus Gaussian read noise. ``bits`` then rounds to ``2**bits - 1`` levels (8 for an 8-bit PNG).
The NumPy and torch forms compute the same thing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["SensorNoise", "NO_NOISE"]


@dataclass(frozen=True)
class SensorNoise:
    """Shot + read noise model.

    Attributes:
        shot_gain: variance per unit of signal (``1 / full_well``); 0 disables shot noise.
        read_std: standard deviation of the read noise, in units of full scale.
        bits: quantise to ``2**bits - 1`` levels after adding noise, or ``None``.
    """

    shot_gain: float = 2e-4
    read_std: float = 3e-3
    bits: int | None = None

    def __post_init__(self) -> None:
        for k in ("shot_gain", "read_std"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"SensorNoise.{k} must be a finite number >= 0, got {v!r}")
        if self.bits is not None and (isinstance(self.bits, bool) or not isinstance(self.bits, int) or not 1 <= self.bits <= 16):
            raise ValueError(f"SensorNoise.bits must be None or an int in [1, 16], got {self.bits!r}")

    @classmethod
    def from_level(cls, level: float, bits: int | None = None) -> "SensorNoise":
        """Noise of standard deviation ``level`` at mid-grey (0.5), one ninth of its variance read noise.

        ``read_std = level / 3`` and ``shot_gain = 16 level**2 / 9``; ``level = 0`` gives no noise.
        """
        if isinstance(level, bool) or not isinstance(level, (int, float)) or not math.isfinite(level) or level < 0:
            raise ValueError(f"noise level must be a finite number >= 0, got {level!r}")
        return cls(shot_gain=16.0 * level**2 / 9.0, read_std=level / 3.0, bits=bits)

    @property
    def is_zero(self) -> bool:
        """True when the model adds no noise and does not quantise."""
        return self.shot_gain == 0 and self.read_std == 0 and self.bits is None

    def apply(self, images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Noisy copy of ``images`` (any shape, float in [0, 1]); float32, clipped to [0, 1]."""
        x = np.clip(np.asarray(images, dtype=np.float32), 0.0, 1.0)
        if self.shot_gain > 0 or self.read_std > 0:
            std = np.sqrt(self.shot_gain * x + self.read_std**2)
            x = np.clip(x + std * rng.standard_normal(x.shape, dtype=np.float32), 0.0, 1.0)
        if self.bits is not None:
            top = float(2**self.bits - 1)
            x = np.round(x * top) / top
        return x.astype(np.float32, copy=False)

    def apply_torch(self, images: Any, generator: Any = None) -> Any:
        """Noisy copy of a torch tensor ``images`` (any shape, in [0, 1]), clipped to [0, 1]."""
        import torch

        x = images.clamp(0.0, 1.0)
        if self.shot_gain > 0 or self.read_std > 0:
            std = torch.sqrt(self.shot_gain * x + self.read_std**2)
            n = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
            x = (x + std * n).clamp(0.0, 1.0)
        if self.bits is not None:
            top = float(2**self.bits - 1)
            x = torch.round(x * top) / top
        return x


#: No noise, no quantisation.
NO_NOISE = SensorNoise(0.0, 0.0, None)
