"""DAIF-Net: depth and all-in-focus image from a focal stack (Si et al., CVPR 2023).

A U-Net whose encoder runs on every image of the stack with shared weights. Each image enters as RGB plus
one constant channel holding its (normalised inverse) focus distance. After every encoder level the
features are max-pooled across the stack ("layer-wise global pooling") and the pooled map is
concatenated back to every branch. Skips and the bottleneck are fused by max across the stack, so the
decoder runs once. Heads: 3-channel AIF and 1-channel depth.

Depth is metric: the depth head gives a fraction ``t`` in ``(0, 1)`` of the inverse-depth interval
``[1/far_m, 1/near_m]``, so ``depth = 1 / (1/far + t (1/near - 1/far))`` metres. No per-image
normalisation. Any stack size ``S >= 2`` and any image size (padded to a multiple of ``2**depth``
internally, cropped back).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["NetConfig", "DAIFOutput", "DAIFNet"]


@dataclass(frozen=True)
class NetConfig:
    """Architecture and working range of a DAIF-Net.

    Attributes:
        width: channels of the first encoder level (published: 16).
        depth: number of encoder levels (published: 4).
        near_m: nearest depth the model predicts, metres.
        far_m: farthest depth the model predicts, metres.
    """

    width: int = 16
    depth: int = 4
    near_m: float = 0.5
    far_m: float = 12.0

    def __post_init__(self) -> None:
        if not isinstance(self.width, int) or self.width < 1:
            raise ValueError(f"width must be a positive integer, got {self.width!r}")
        if not isinstance(self.depth, int) or not 1 <= self.depth <= 6:
            raise ValueError(f"depth must be an integer in 1..6, got {self.depth!r}")
        if not (0 < self.near_m < self.far_m) or not math.isfinite(self.far_m):
            raise ValueError(f"need 0 < near_m < far_m < inf, got near {self.near_m}, far {self.far_m}")


class DAIFOutput(NamedTuple):
    """Network output: ``aif`` (B, 3, H, W) in [0, 1]; ``depth_m`` (B, 1, H, W) metres."""

    aif: Tensor
    depth_m: Tensor


def _conv_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.LeakyReLU(0.1, inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.LeakyReLU(0.1, inplace=True),
    )


def _stack_max(x: Tensor, b: int, s: int) -> Tensor:
    """(B*S, C, H, W) -> (B, C, H, W): max over the stack."""
    return x.reshape(b, s, *x.shape[1:]).amax(dim=1)


def _broadcast(x: Tensor, s: int) -> Tensor:
    """(B, C, H, W) -> (B*S, C, H, W): the pooled map repeated for every branch."""
    b = x.shape[0]
    return x.unsqueeze(1).expand(b, s, *x.shape[1:]).reshape(b * s, *x.shape[1:])


class DAIFNet(nn.Module):
    """DAIF-Net. See the module docstring.

    Args:
        config: architecture and working range (:class:`NetConfig`).
    """

    def __init__(self, config: NetConfig | None = None) -> None:
        super().__init__()
        self.config = config or NetConfig()
        w, d = self.config.width, self.config.depth
        chans = [w * 2**i for i in range(d)]
        self.encoders = nn.ModuleList()
        cin = 4
        for i, c in enumerate(chans):
            # level 0 sees the raw input; later levels see [branch features, stack-pooled features]
            self.encoders.append(_conv_block(cin if i == 0 else 2 * cin, c))
            cin = c
        self.bottleneck = _conv_block(2 * chans[-1], 2 * chans[-1])
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        cdec = 2 * chans[-1]
        for c in reversed(chans):
            self.ups.append(nn.Conv2d(cdec, c, 3, padding=1))
            self.decoders.append(_conv_block(2 * c, c))
            cdec = c
        self.head = nn.Conv2d(chans[0], 4, 3, padding=1)
        inv_near, inv_far = 1.0 / self.config.near_m, 1.0 / self.config.far_m
        self.register_buffer("inv_near", torch.tensor(inv_near), persistent=False)
        self.register_buffer("inv_far", torch.tensor(inv_far), persistent=False)

    @property
    def multiple(self) -> int:
        """Image sizes are padded internally to a multiple of this."""
        return 2 ** self.config.depth

    def focus_code(self, focus_m: Tensor) -> Tensor:
        """Normalised inverse focus distance: 0 at ``far_m``, 1 at ``near_m``. ``(B, S)`` -> ``(B, S)``."""
        return (1.0 / focus_m - self.inv_far) / (self.inv_near - self.inv_far)

    def depth_from_fraction(self, t: Tensor) -> Tensor:
        """Metric depth from the inverse-depth fraction ``t`` in (0, 1)."""
        return 1.0 / (self.inv_far + t * (self.inv_near - self.inv_far))

    def forward(self, images: Tensor, focus_m: Tensor) -> DAIFOutput:
        """Predict AIF and depth.

        Args:
            images: ``(B, S, 3, H, W)`` focal stack in [0, 1], ``S >= 2``.
            focus_m: ``(B, S)`` focus distance of each image, metres (positive).

        Returns:
            :class:`DAIFOutput` with ``aif (B, 3, H, W)`` and ``depth_m (B, 1, H, W)``.
        """
        if images.dim() != 5 or images.shape[2] != 3:
            raise ValueError(f"images must be (B, S, 3, H, W), got {tuple(images.shape)}")
        b, s, _, h, w = images.shape
        if s < 2:
            raise ValueError(f"a focal stack needs at least 2 images, got {s}")
        if focus_m.shape != (b, s):
            raise ValueError(f"focus_m must be (B, S) = ({b}, {s}), got {tuple(focus_m.shape)}")
        m = self.multiple
        ph, pw = (-h) % m, (-w) % m
        x = images.reshape(b * s, 3, h, w) * 2.0 - 1.0
        if ph or pw:
            mode = "reflect" if (ph < h and pw < w) else "replicate"
            x = F.pad(x, (0, pw, 0, ph), mode=mode)
        code = self.focus_code(focus_m.to(x.dtype)).reshape(b * s, 1, 1, 1)
        x = torch.cat([x, code.expand(b * s, 1, h + ph, w + pw)], dim=1)

        skips: list[Tensor] = []
        for i, enc in enumerate(self.encoders):
            x = enc(x)
            pooled = _stack_max(x, b, s)
            skips.append(pooled)
            x = torch.cat([x, _broadcast(pooled, s)], dim=1)
            x = F.max_pool2d(x, 2)
        x = self.bottleneck(x)
        y = _stack_max(x, b, s)
        for up, dec, skip in zip(self.ups, self.decoders, reversed(skips)):
            y = F.interpolate(y, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            y = dec(torch.cat([up(y), skip], dim=1))
        out = self.head(y)[:, :, :h, :w]
        aif = torch.sigmoid(out[:, :3])
        depth = self.depth_from_fraction(torch.sigmoid(out[:, 3:4]))
        return DAIFOutput(aif=aif, depth_m=depth)
