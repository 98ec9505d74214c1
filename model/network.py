"""DAIF-Net: depth and all-in-focus image from a focal stack (Si et al., CVPR 2023).

A U-Net whose encoder runs on every image of the stack with shared weights. Each image enters as RGB plus
one constant channel holding its focus code. After every encoder level the features are max-pooled
across the stack ("layer-wise global pooling") and the pooled map is concatenated back to every branch.
Skips and the bottleneck are fused by max across the stack, so the decoder runs once. Heads: 3-channel
AIF and 1-channel depth.

Two focus codings (``NetConfig.focus_code``):

- ``"blur"`` (lens-aware, the default model): every quantity lives on the lens-independent blur axis
  ``x = K / d`` pixels, ``K = f^2 / (4 N p)`` the lens's blur per dioptre
  (:func:`model.optics.blur_per_dioptre_px`): the blur of frame ``i`` is ``~ |x_f,i - x|`` pixels
  whatever the lens. Frame ``i`` enters with ``(K / d_f,i - x_lo) / (x_hi - x_lo)``; the depth head gives
  ``t`` in (0, 1) and ``x = x_lo + t (x_hi - x_lo)``, ``depth = K / x`` metres. So one network serves
  every lens whose focus codes ``K / d_f`` lie in ``[x_lo_px, x_hi_px]``; ``K`` comes from the stack's
  lens profile (the ``k`` argument, or the buffer set by :meth:`DAIFNet.set_lens`, which is what ONNX
  export bakes in).
- ``"inverse_depth"`` (lens-specific, the published model): the code is the inverse focus distance
  normalised to ``[1/far_m, 1/near_m]`` and depth ``1 / (1/far + t (1/near - 1/far))`` metres; valid only
  for the one lens it was trained with.

The AIF output (``NetConfig.aif``): in training, the AIF head (the self-supervised loss re-renders the stack
from it). At inference a blur-coded network by default returns the *depth-guided composite* instead: per
pixel, the input frames weighted by ``softmax(-sigma_i / tau)`` with ``sigma_i = |x_f,i - x|`` pixels the blur
the predicted depth gives frame ``i`` (:func:`model.losses.soft_coarse_aif`), which keeps the colours and
detail of the frames themselves (on the suite's tuning split: 33.9 dB PSNR to the true AIF against the
head's 28.0 dB, shipped model).

No per-image normalisation. Any stack size ``S >= 2`` and any image size (padded to a multiple of
``2**depth`` internally, cropped back).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["NetConfig", "DAIFOutput", "DAIFNet", "lens_aware_config"]


@dataclass(frozen=True)
class NetConfig:
    """Architecture and working range of a DAIF-Net.

    Attributes:
        width: channels of the first encoder level (published: 16).
        depth: number of encoder levels (published: 4).
        near_m: ``"inverse_depth"`` coding: nearest depth the model predicts, metres.
        far_m: ``"inverse_depth"`` coding: farthest depth the model predicts, metres.
        focus_code: ``"inverse_depth"`` (one lens) or ``"blur"`` (any lens; see the module docstring).
        x_lo_px: ``"blur"`` coding: smallest blur code ``K / d`` (pixels) predicted and accepted as focus.
        x_hi_px: ``"blur"`` coding: largest blur code ``K / d`` (pixels).
        aif: AIF returned at inference: ``"head"`` (the network's AIF head), ``"composite"`` (the input frames
            weighted by the blur the predicted depth gives them; blur coding only) or ``"auto"``
            (composite for the blur coding, head otherwise). Training always uses the head.
        aif_temperature_px: softness of the composite's per-pixel choice of frame, pixels of blur.
    """

    width: int = 16
    depth: int = 4
    near_m: float = 0.5
    far_m: float = 12.0
    focus_code: str = "inverse_depth"
    x_lo_px: float = 0.5425
    x_hi_px: float = 13.02
    aif: str = "auto"
    aif_temperature_px: float = 0.25

    def __post_init__(self) -> None:
        if self.focus_code not in ("inverse_depth", "blur"):
            raise ValueError(f"focus_code must be 'inverse_depth' or 'blur', got {self.focus_code!r}")
        if self.aif not in ("auto", "head", "composite"):
            raise ValueError(f"aif must be 'auto', 'head' or 'composite', got {self.aif!r}")
        if self.aif == "composite" and self.focus_code != "blur":
            raise ValueError("aif='composite' needs focus_code='blur' (it weighs frames by their blur in pixels)")
        if not (0 < self.aif_temperature_px) or not math.isfinite(self.aif_temperature_px):
            raise ValueError(f"aif_temperature_px must be positive, got {self.aif_temperature_px}")
        if not (0 < self.x_lo_px < self.x_hi_px) or not math.isfinite(self.x_hi_px):
            raise ValueError(f"need 0 < x_lo_px < x_hi_px < inf, got {self.x_lo_px}, {self.x_hi_px}")
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


def pad_to_multiple(size: Any, multiple: int) -> Any:
    """Pixels to add to ``size`` (an int, or a traced size in an ONNX export) to reach a multiple of
    ``multiple``. Rounded up by integer division, not ``%``: ONNX Mod is not in TensorRT 8.5's (JetPack 5)
    operator set, and exported graphs compute this from traced sizes."""
    return (size + multiple - 1) // multiple * multiple - size


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
        if self.config.focus_code == "blur":
            lo, hi = self.config.x_lo_px, self.config.x_hi_px
        else:
            lo, hi = 1.0 / self.config.far_m, 1.0 / self.config.near_m
        # the coded axis: blur code x (pixels) or inverse depth (dioptres), lo at the far end
        self.register_buffer("code_lo", torch.tensor(lo), persistent=False)
        self.register_buffer("code_hi", torch.tensor(hi), persistent=False)
        # K (pixels per dioptre) of the lens in use when no ``k`` is passed (blur coding); 1 until set
        self.register_buffer("blur_per_dioptre", torch.tensor(1.0), persistent=False)
        self._lens_set = False

    @property
    def composite_aif(self) -> bool:
        """Whether inference returns the depth-guided composite AIF (see the module docstring)."""
        return self.config.aif == "composite" or (self.config.aif == "auto" and self.lens_aware)

    @property
    def lens_aware(self) -> bool:
        """Whether one network serves every lens (``focus_code == "blur"``)."""
        return self.config.focus_code == "blur"

    def set_lens(self, lens: Any) -> "DAIFNet":
        """Use ``lens`` (anything with focal_length_m, f_number, pixel_pitch_m) when no ``k`` is passed.

        Only meaningful for the blur coding; the inverse-depth coding ignores it. Returns ``self``.
        """
        from model.optics import blur_per_dioptre_px

        self.blur_per_dioptre.fill_(float(blur_per_dioptre_px(lens)))
        self._lens_set = True
        return self

    def working_range_m(self, k: float | None = None) -> tuple[float, float]:
        """``(near_m, far_m)`` this network can predict: for the blur coding, for a lens of blur gain ``k``
        (pixels per dioptre; default: the lens set by :meth:`set_lens`)."""
        if not self.lens_aware:
            return self.config.near_m, self.config.far_m
        kk = float(self.blur_per_dioptre) if k is None else float(k)
        return kk / self.config.x_hi_px, kk / self.config.x_lo_px

    @property
    def multiple(self) -> int:
        """Image sizes are padded internally to a multiple of this."""
        return 2 ** self.config.depth

    def _gain(self, k: Tensor | None, b: int, like: Tensor) -> Tensor | float:
        """``(B, 1)`` blur gain K (pixels per dioptre) for the blur coding; 1 for inverse depth."""
        if not self.lens_aware:
            return 1.0
        if k is None:
            return self.blur_per_dioptre.to(like.dtype).reshape(1, 1).expand(b, 1)
        return k.to(like.dtype).reshape(-1, 1).expand(b, 1)

    def focus_code(self, focus_m: Tensor, k: Tensor | None = None) -> Tensor:
        """Normalised focus code, 0 at the far end of the coded axis and 1 at the near end.

        ``(B, S)`` metres -> ``(B, S)``; ``k``: ``(B,)`` blur gain (pixels per dioptre) for the blur coding.
        """
        g = self._gain(k, focus_m.shape[0], focus_m)
        return (g / focus_m - self.code_lo) / (self.code_hi - self.code_lo)

    def depth_from_fraction(self, t: Tensor, k: Tensor | None = None) -> Tensor:
        """Metric depth ``(B, 1, H, W)`` from the fraction ``t`` in (0, 1) of the coded axis."""
        g = self._gain(k, t.shape[0], t)
        if isinstance(g, Tensor):
            g = g.reshape(-1, 1, 1, 1)
        return g / (self.code_lo + t * (self.code_hi - self.code_lo))

    def forward(self, images: Tensor, focus_m: Tensor, k: Tensor | None = None) -> DAIFOutput:
        """Predict AIF and depth.

        Args:
            images: ``(B, S, 3, H, W)`` focal stack in [0, 1], ``S >= 2``.
            focus_m: ``(B, S)`` focus distance of each image, metres (positive).
            k: ``(B,)`` blur gain ``f^2 / (4 N p)`` of each stack's lens, pixels per dioptre (blur coding
                only; default: the lens set by :meth:`set_lens`).

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
        ph, pw = pad_to_multiple(h, m), pad_to_multiple(w, m)
        x = images.reshape(b * s, 3, h, w) * 2.0 - 1.0
        if ph or pw:
            mode = "reflect" if (ph < h and pw < w) else "replicate"
            x = F.pad(x, (0, pw, 0, ph), mode=mode)
        code = self.focus_code(focus_m.to(x.dtype), k).reshape(b * s, 1, 1, 1)
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
        t = torch.sigmoid(out[:, 3:4])
        depth = self.depth_from_fraction(t, k)
        if self.composite_aif and not self.training:
            from model.losses import soft_coarse_aif

            # blur of frame i at the predicted depth, pixels: |x_f,i - x| on the blur axis
            sigma = (code.reshape(b, s, 1, 1) - t).abs() * (self.code_hi - self.code_lo)
            aif = soft_coarse_aif(images, sigma, self.config.aif_temperature_px)
        else:
            aif = torch.sigmoid(out[:, :3])
        return DAIFOutput(aif=aif, depth_m=depth)


def lens_aware_config(config: NetConfig, lens: Any) -> NetConfig:
    """The blur-coded twin of an inverse-depth config: same weights, same depth for ``lens`` (and the same AIF
    with ``aif="head"``; by default a blur-coded network returns the depth-guided composite AIF).

    With ``K`` = the lens's blur gain, the inverse-depth axis ``[1/far, 1/near]`` becomes the blur axis
    ``[K/far, K/near]`` pixels; since both codings are linear in inverse distance the network's input
    codes and its depth are unchanged for that lens, and other lenses are mapped onto the same blur axis.
    A blur-coded config is returned unchanged.
    """
    from dataclasses import replace

    from model.optics import blur_per_dioptre_px

    if config.focus_code == "blur":
        return config
    k = blur_per_dioptre_px(lens)
    return replace(config, focus_code="blur", x_lo_px=k / config.far_m, x_hi_px=k / config.near_m)
