"""Test-time refinement: fit depth and AIF to the one stack at hand through the lens model.

Starting from any runner's prediction, :func:`refine_prediction` minimises the training objective's
reconstruction (plain L1) and edge-aware smoothness terms on this stack alone, by Adam on per-pixel
log-depth and the AIF, coarse to fine, with the Gaussian blur at ``psf_sigma_scale`` (1.08, the
disc-matched Gaussian, :func:`disc_matched_sigma_scale`) times ``c / (4 p)``
(``model.optics.coc_sigma_px(..., blur_scale)``). Then :func:`propagate_depth`
(:mod:`model.depth_propagation`) carries depth from the pixels the physics check trusts and whose own AIF
neighbourhood has texture (:func:`aif_texture`, :func:`focus_texture`) and whose depth the stack's own relative-blur
cost agrees with (:func:`model.defocus_sweep.cost_support`) into textureless regions, and :func:`weighted_median_depth`
(:mod:`model.depth_filters`) removes speckles and halos; a second, shorter fit starts from that result.
All of it runs once more from a far constant depth, and the result the stack's relative blur consistently prefers
is kept (:attr:`RefineConfig.far_start`). :class:`RefiningRunner` wraps any runner with all of it. :data:`FAST_REFINE`
(``--fast-refine``) keeps only the cheap part: the relative-blur sweep around the network's depth, then the propagation
and median, twice (about 5.5 s per 320x240 stack on two CPU threads).

Why each setting is what it is (the tuning log: measurements on the tuning sets, the blur model, costs)
is in ``docs/refine.md``. About 40 s per 5 x 240 x 320 stack and start on two CPU threads (two starts by default,
:attr:`RefineConfig.far_start`): offline
(``model.predict --refine``, ``model.evaluate --refine``), not the live loop. It works after any runtime
(PyTorch, onnxruntime, TensorRT): it needs only the stack, the prediction and PyTorch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from model.depth_filters import aif_texture, focus_texture, weighted_median_depth
from model.depth_propagation import PROPAGATE_SPACES, propagate_depth
from model.losses import LossWeights
from model.runners import Prediction, Runner, RunnerWrapper, check_stack_input

if TYPE_CHECKING:
    from model.defocus_sweep import CostGrid
    from model.lens import LensProfile

__all__ = [
    "RefineConfig",
    "FAST_REFINE",
    "refine_prediction",
    "propagate_depth",
    "RefiningRunner",
    "PROPAGATE_SPACES",
    "weighted_median_depth",
    "DISC_MATCHED_SIGMA_SCALE",
    "disc_matched_sigma_scale",
    "aif_texture",
    "focus_texture",
    "TEXTURE_SOURCES",
    "block_t_statistic",
]

DISC_MATCHED_SIGMA_SCALE: float = 1.08
"""The L1-best Gaussian for a uniform disc of diameter ``D`` px has ``sigma = 1.08 D / 4`` (``docs/refine.md``, "The blur model")."""


TEXTURE_SOURCES: tuple[str, ...] = ("aif", "focus", "both")
"""Where :class:`RefineConfig.propagate_texture_from` measures texture."""


@dataclass(frozen=True)
class RefineConfig:
    """Options of the test-time refinement.

    Attributes:
        scales: image scales of the stages, coarse to fine (1.0 = full resolution).
        iterations: Adam iterations per stage (same length as ``scales``; 0 skips a stage).
        lr_log_depth: step size on log-depth (natural log of metres).
        lr_aif: step size on the AIF (intensity in [0, 1]).
        max_radius_px: cap on the PSF window at full resolution, pixels.
        psf_sigma_scale: the fit's Gaussian blur is this times the moment-matched ``c / (4 p)`` (1.08: the
            Gaussian that best reproduces the thin lens's uniform disc, see ``docs/refine.md``; 1.0: the
            training model).
        weights: loss weights (``recon``, ``smooth``, ``smooth_beta``, ``ssim_alpha`` are used); the
            published ones with ``ssim_alpha = 0`` (plain L1, see ``docs/refine.md``).
        propagate: fill textureless regions with :func:`propagate_depth` after the fit.
        propagate_strength, propagate_colour_sigma, propagate_confidence_power, propagate_iterations,
            propagate_space: its settings (chosen on the tuning set).
        propagate_texture_window, propagate_texture_tau: the propagation trusts a pixel by its physics-check
            confidence times ``1 - exp(-texture / tau)`` (texture: colour standard deviation over a ``window``
            x ``window`` box, intensity units); ``tau = 0`` uses the confidence alone.
        propagate_texture_from: where that texture is measured: ``"aif"`` the fitted AIF (:func:`aif_texture`),
            ``"focus"`` the frame focused nearest to the pixel's fitted depth (:func:`focus_texture`), ``"both"``
            the smaller of the two (``docs/refine.md``, "Weak texture").
        propagate_cost_agreement: also weigh the trust by how well the stack's relative-blur cost, which needs
            no AIF, agrees with the fitted depth (:func:`model.defocus_sweep.cost_support`: 1 at the cost's
            minimum, 0 no better than the average depth; ``docs/refine.md``, "Trust from the sweep"). On by
            default since 2026-12-07 (18 never-scored tuning stacks: delta1 0.940 -> 0.963, AbsRel 0.063 ->
            0.057). The cost is computed once per refinement and shared (:func:`model.defocus_sweep.cost_grid`).
        propagate_cost_distinct: when > 0, also weigh the trust by that cost's distinctness divided by this
            scale (clipped to 1): a flat cost (weak texture) carries little trust whatever the fit says.
        median_radius, median_colour_sigma: the final colour-weighted median filter
            (:func:`weighted_median_depth`; window ``2r+1`` pixels, colour scale in intensity units);
            ``median_radius = 0`` leaves it out.
        second_scales, second_iterations: stages of a second fit, started from the propagated and
            filtered depth, followed by a second propagation and median (empty or all-zero iterations:
            one pass only).
        far_start: when > 0, everything above runs a second time from a constant depth of ``far_start``
            times the working range's far end, and the result of that run replaces the first one's when its
            mean relative-blur cost over the image (:func:`model.defocus_sweep.relative_blur_cost_of`, which
            needs no AIF) is lower by at least ``far_start_min_gain`` of the first's and, with
            ``far_start_min_t``, consistently lower over the image: from the network's guess the fit cannot leave
            a wrong, nearer basin on surfaces beyond the farthest focus, where the re-rendering loss barely
            tells the two apart (``docs/refine.md``, "Two starts" and "A consistency test"). 0: one start
            (twice the cost otherwise).
        far_start_min_gain: see ``far_start`` (a fraction in ``[0, 1)``; 0: any gain).
        far_start_min_t: when > 0, the far start's result must be consistently cheaper over the image: the
            cost difference (first minus far) averaged over non-overlapping ``far_start_block`` x
            ``far_start_block`` pixel blocks must have a t statistic (mean over its standard error,
            :func:`block_t_statistic`) above this. Default 3 with no minimum gain: beyond the farthest focus the
            right depth is cheaper by only 1-3 % but in nearly every block (tuning split, ``docs/refine.md``).
            0: the mean gain alone decides (the rule before, with gain 0.1).
        far_start_block: side of those blocks, pixels (the cost's own window: neighbouring blocks share little).
        sweep_rounds: after the fits (and the propagation and median that follow each), this many rounds of: the
            relative-blur sweep around the current depth (:func:`model.defocus_sweep.sweep_depth`, its default, gated
            :class:`model.defocus_sweep.SweepConfig`; each round can move a pixel's blur code by up to the sweep's
            band, 1.35x), then the propagation and median above. With rounds, a pass whose fit has no iterations is
            skipped, so a config without iterations is the fast refinement, :data:`FAST_REFINE`. 0 (default): none.
    """

    scales: tuple[float, ...] = (0.25, 0.5, 1.0)
    iterations: tuple[int, ...] = (100, 60, 15)
    lr_log_depth: float = 0.03
    lr_aif: float = 0.005
    max_radius_px: int = 24
    psf_sigma_scale: float = DISC_MATCHED_SIGMA_SCALE
    weights: LossWeights = field(default_factory=lambda: LossWeights(ssim_alpha=0.0))
    propagate: bool = True
    propagate_strength: float = 1000.0
    propagate_colour_sigma: float = 0.025
    propagate_confidence_power: float = 2.0
    propagate_iterations: int = 1000
    propagate_space: str = "log"
    propagate_texture_window: int = 5
    propagate_texture_tau: float = 0.02
    propagate_texture_from: str = "both"
    propagate_cost_agreement: bool = True
    propagate_cost_distinct: float = 0.0
    median_radius: int = 5
    median_colour_sigma: float = 0.1
    second_scales: tuple[float, ...] = (0.5, 1.0)
    second_iterations: tuple[int, ...] = (30, 15)
    far_start: float = 0.8
    far_start_min_gain: float = 0.0
    far_start_min_t: float = 3.0
    far_start_block: int = 15
    sweep_rounds: int = 0

    def validate(self) -> None:
        """Raise ``ValueError`` for settings that cannot work."""
        if len(self.scales) != len(self.iterations) or not self.scales:
            raise ValueError("refine: scales and iterations need the same, non-zero length")
        if any(not (0.0 < s <= 1.0) for s in self.scales):
            raise ValueError(f"refine: scales must be in (0, 1], got {self.scales}")
        if any(int(n) < 0 for n in self.iterations):
            raise ValueError(f"refine: iterations must be >= 0, got {self.iterations}")
        if self.lr_log_depth <= 0 or self.lr_aif < 0:
            raise ValueError("refine: lr_log_depth must be > 0 and lr_aif >= 0")
        if self.propagate_strength < 0 or self.propagate_colour_sigma <= 0 or self.propagate_iterations < 1:
            raise ValueError("refine: propagate_strength must be >= 0, colour sigma > 0, iterations >= 1")
        if self.propagate_space not in PROPAGATE_SPACES:
            raise ValueError(f"refine: propagate_space must be one of {PROPAGATE_SPACES}, got {self.propagate_space!r}")
        if not (math.isfinite(self.psf_sigma_scale) and 0.5 <= self.psf_sigma_scale <= 2.0):
            raise ValueError(f"refine: psf_sigma_scale must be in [0.5, 2], got {self.psf_sigma_scale}")
        if not (self.propagate_texture_window % 2 == 1 and 1 <= self.propagate_texture_window <= 31) or not (
                math.isfinite(self.propagate_texture_tau) and self.propagate_texture_tau >= 0):
            raise ValueError(f"refine: propagate_texture_window must be odd in [1, 31] and propagate_texture_tau >= 0, "
                             f"got {self.propagate_texture_window}, {self.propagate_texture_tau}")
        if self.propagate_texture_from not in TEXTURE_SOURCES:
            raise ValueError(f"refine: propagate_texture_from must be one of {TEXTURE_SOURCES}, got "
                             f"{self.propagate_texture_from!r}")
        if not (math.isfinite(self.propagate_cost_distinct) and 0.0 <= self.propagate_cost_distinct <= 1.0):
            raise ValueError(f"refine: propagate_cost_distinct must be in [0, 1] (0: off), got "
                             f"{self.propagate_cost_distinct}")
        if not 0 <= self.median_radius <= 15 or not self.median_colour_sigma > 0:
            raise ValueError(f"refine: median_radius must be in [0, 15] and median_colour_sigma > 0, got "
                             f"{self.median_radius}, {self.median_colour_sigma}")
        if len(self.second_scales) != len(self.second_iterations):
            raise ValueError("refine: second_scales and second_iterations need the same length")
        if any(not (0.0 < x <= 1.0) for x in self.second_scales) or any(int(n) < 0 for n in self.second_iterations):
            raise ValueError(f"refine: second_scales must be in (0, 1] and second_iterations >= 0, got "
                             f"{self.second_scales}, {self.second_iterations}")
        if not (math.isfinite(self.far_start) and 0.0 <= self.far_start <= 1.0):
            raise ValueError(f"refine: far_start must be in [0, 1] (0: off), got {self.far_start}")
        if not (math.isfinite(self.far_start_min_gain) and 0.0 <= self.far_start_min_gain < 1.0):
            raise ValueError(f"refine: far_start_min_gain must be in [0, 1), got {self.far_start_min_gain}")
        if not (math.isfinite(self.far_start_min_t) and self.far_start_min_t >= 0.0):
            raise ValueError(f"refine: far_start_min_t must be a number >= 0 (0: off), got {self.far_start_min_t}")
        if isinstance(self.far_start_block, bool) or not isinstance(self.far_start_block, int) or not (
                1 <= self.far_start_block <= 256):
            raise ValueError(f"refine: far_start_block must be a whole number of pixels in [1, 256], got "
                             f"{self.far_start_block!r}")
        if isinstance(self.sweep_rounds, bool) or not isinstance(self.sweep_rounds, int) or not (
                0 <= self.sweep_rounds <= 16):
            raise ValueError(f"refine: sweep_rounds must be a whole number in [0, 16], got {self.sweep_rounds!r}")
        if not 1 <= self.max_radius_px <= 64:
            raise ValueError(f"refine: max_radius_px must be in [1, 64], got {self.max_radius_px}")

    @property
    def total_iterations(self) -> int:
        """Gradient steps of both fits and sweep rounds (one step each), from every start."""
        steps = int(sum(self.iterations)) + int(sum(self.second_iterations)) + self.sweep_rounds
        return steps * (2 if self.far_start > 0 else 1)

    @property
    def has_second_pass(self) -> bool:
        """Whether a second fit follows the first propagation and median."""
        return int(sum(self.second_iterations)) > 0


FAST_REFINE = RefineConfig(iterations=(0, 0, 0), second_iterations=(0, 0), far_start=0.0, sweep_rounds=2)
"""The fast refinement (``--fast-refine``): no gradient fits; two rounds of the gated relative-blur sweep around the
depth (the network's, then the first round's), each followed by the propagation into untrusted pixels and the
colour-weighted median of the refinement (two rounds: chosen on 162 tuning stacks and checked on 54 never used before,
``docs/refine.md``, "The fast refinement"). One start (a far start made of sweeps chose wrong far surfaces on the
tuning split). A few seconds per 5 x 240 x 320 stack on the CPU (``benchmarks/bench_refine.py --skip-full``), against
40 s per start of the full refinement."""


def disc_matched_sigma_scale(texture: np.ndarray, diameter_px: float,
                             scales: Sequence[float] = tuple(np.round(np.arange(0.80, 1.401, 0.02), 2))) -> float:
    """The Gaussian blur that reproduces a uniform-disc blur of ``texture`` best in L1.

    Blurs ``texture`` (``(H, W, 3)`` in [0, 1]) with the anti-aliased uniform disc of diameter
    ``diameter_px`` pixels (:func:`model.synth.layered.disc_blur`) and returns the ``k`` among ``scales``
    for which the Gaussian renderer with ``sigma = k * diameter_px / 4`` (``k = 1``: moment-matched) comes
    closest in mean absolute difference, away from the borders.
    """
    import torch

    from model.render import gauss_psf
    from model.synth.layered import disc_blur

    tex = np.asarray(texture, np.float32)
    if tex.ndim != 3 or tex.shape[2] != 3:
        raise ValueError(f"texture must be (H, W, 3), got {tex.shape}")
    h, w, _ = tex.shape
    margin = int(math.ceil(diameter_px)) + 2
    if h <= 2 * margin + 8 or w <= 2 * margin + 8:
        raise ValueError(f"texture {h}x{w} too small for a {diameter_px} px disc")
    target = disc_blur(tex, diameter_px)[margin:-margin, margin:-margin]
    x = torch.from_numpy(tex).permute(2, 0, 1)[None]
    errors = []
    with torch.no_grad():
        for k in scales:
            out = gauss_psf(x, torch.full((1, 1, h, w), float(k) * diameter_px / 4.0))[0].permute(1, 2, 0).numpy()
            errors.append(float(np.abs(out[margin:-margin, margin:-margin] - target).mean()))
    return float(scales[int(np.argmin(errors))])


def _resize(t, size: tuple[int, int]):
    import torch.nn.functional as F

    if tuple(t.shape[-2:]) == tuple(size):
        return t
    if size[0] <= t.shape[-2] and size[1] <= t.shape[-1]:
        return F.interpolate(t, size=size, mode="area")
    return F.interpolate(t, size=size, mode="bilinear", align_corners=False)


def refine_prediction(
    images: np.ndarray,
    focus_m: Sequence[float],
    lens,
    depth_m: np.ndarray,
    aif: np.ndarray,
    near_m: float,
    far_m: float,
    config: RefineConfig = RefineConfig(),
    device: str | None = None,
    on_iteration: Callable[[int, float], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Refine one prediction on its own stack.

    Args:
        images: ``(S, H, W, 3)`` float32 stack in [0, 1].
        focus_m: ``(S,)`` focus distances, metres.
        lens: the lens profile (thin-lens focal length, f-number, pixel pitch).
        depth_m: ``(H, W)`` initial depth, metres (the network's prediction).
        aif: ``(H, W, 3)`` initial all-in-focus image in [0, 1].
        near_m, far_m: the working range; depth stays inside it.
        config: :class:`RefineConfig`.
        device: torch device; default CUDA when available.
        on_iteration: called with ``(iteration, loss)`` after every step (progress reporting).

    Returns:
        ``(depth_m (H, W) float32 metres, aif (H, W, 3) float32)``.

    Raises:
        ValueError: bad shapes, a non-positive initial depth or a bad config.
    """
    import torch

    from model.losses import edge_aware_smoothness, recon_loss
    from model.render import rerender_stack

    config.validate()
    arr, fm = check_stack_input(images, focus_m)
    s, h, w, _ = arr.shape
    depth_m = np.asarray(depth_m, np.float32)
    aif = np.asarray(aif, np.float32)
    if depth_m.shape != (h, w) or aif.shape != (h, w, 3):
        raise ValueError(f"refine: depth {depth_m.shape} / AIF {aif.shape} do not match the stack's {h}x{w} frames")
    if not (np.all(np.isfinite(depth_m)) and np.all(depth_m > 0)):
        raise ValueError("refine: the initial depth must be finite and positive")
    if not 0 < near_m < far_m:
        raise ValueError(f"refine: bad working range [{near_m}, {far_m}] m")
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    wts = config.weights
    x_full = torch.from_numpy(arr).permute(0, 3, 1, 2).to(dev)  # (S,3,H,W)
    f = torch.from_numpy(fm).unsqueeze(0).to(dev)
    lo, hi = math.log(near_m), math.log(far_m)
    u_full = torch.from_numpy(np.log(np.clip(depth_m, near_m, far_m)))[None, None].to(dev)  # (1,1,H,W)
    a_full = torch.from_numpy(aif).permute(2, 0, 1)[None].to(dev)  # (1,3,H,W)
    step = 0
    for scale, n_iter in zip(config.scales, config.iterations):
        if n_iter <= 0:
            continue
        size = (max(8, round(h * scale)), max(8, round(w * scale)))
        px_scale = size[1] / w  # blur in pixels shrinks with the image
        x = _resize(x_full, size).unsqueeze(0)  # (1,S,3,h,w)
        u0 = _resize(u_full, size)
        a0 = _resize(a_full, size)
        du = torch.zeros_like(u0, requires_grad=True)
        da = torch.zeros_like(a0, requires_grad=True)
        opt = torch.optim.Adam([{"params": [du], "lr": config.lr_log_depth}, {"params": [da], "lr": config.lr_aif}])
        radius_cap = max(1, round(config.max_radius_px * px_scale))
        for _ in range(int(n_iter)):
            depth = torch.exp((u0 + du).clamp(lo, hi))
            a = (a0 + da).clamp(0.0, 1.0)
            rendered, _ = rerender_stack(a, depth, f, lens, config.psf_sigma_scale, max_radius=radius_cap,
                                         pixel_scale=px_scale)
            if wts.ssim_alpha > 0:
                loss = wts.recon * recon_loss(rendered, x, alpha=wts.ssim_alpha)
            else:  # the same value as recon_loss(alpha=0), without computing an SSIM map it would multiply by 0
                loss = wts.recon * (rendered - x).abs().mean()
            if wts.smooth > 0:
                loss = loss + wts.smooth * edge_aware_smoothness(depth, a.detach(), beta=wts.smooth_beta)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if on_iteration is not None:
                on_iteration(step, float(loss.detach()))
        with torch.no_grad():  # carry the change found at this scale onto the full-resolution maps
            u_full = (u_full + _resize(du.detach(), (h, w))).clamp(lo, hi)
            a_full = (a_full + _resize(da.detach(), (h, w))).clamp(0.0, 1.0)
    depth_out = torch.exp(u_full)[0, 0].float().cpu().numpy()
    aif_out = a_full[0].permute(1, 2, 0).float().cpu().numpy()
    return depth_out.astype(np.float32), aif_out.astype(np.float32)


class RefiningRunner(RunnerWrapper):
    """A :class:`model.runners.Runner` that refines another runner's predictions on their own stacks.

    The physics check (confidence, residual, re-rendered stack) is recomputed for the refined maps, with
    the refinement's blur model (``config.psf_sigma_scale``).
    """

    def __init__(self, runner: Runner, config: RefineConfig = RefineConfig(), device: str | None = None,
                 progress: bool = False) -> None:
        config.validate()
        super().__init__(runner, "refine")
        self.progress = progress
        self.config = config
        self.device = device

    def predict(self, images: np.ndarray, focus_m: Sequence[float]) -> Prediction:
        """Predict with the inner runner, refine on the stack, then propagate into textureless regions
        (``(S, H, W, 3)`` stack, focus in metres)."""
        return self.refine(images, focus_m, self.inner.predict(images, focus_m))

    def refine(self, images: np.ndarray, focus_m: Sequence[float], pred: Prediction) -> Prediction:
        """Refine an existing prediction ``pred`` of the stack ``images`` (``(S, H, W, 3)``) on that stack:
        fit, propagate, median; then (``config.second_iterations``) once more from that result; with
        ``config.far_start``, all of it once more from the far start, keeping the result the stack's relative blur
        prefers."""
        far_m = self.working_range_m[1]
        cfg = self.config
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(total=cfg.total_iterations, desc="refine", unit="it", leave=False)
        tick = (lambda i, loss: bar.update(1)) if bar is not None else None
        grid = _LazyCostGrid(images, focus_m, self.lens, self.working_range_m)  # one per stack, built on first use
        try:
            depth, aif = self._refine_from(images, focus_m, pred.depth_m, pred.aif, tick, grid)
            if cfg.far_start > 0:
                far_depth, far_aif = self._refine_from(
                    images, focus_m, np.full_like(pred.depth_m, cfg.far_start * far_m), pred.aif, tick, grid)
                depth, aif = self._arbitrate(grid, (depth, aif), (far_depth, far_aif))
        finally:
            if bar is not None:
                bar.close()
        chk = self._check(images, focus_m, depth, aif)  # of the final maps, once
        return replace(pred, depth_m=depth, aif=aif, confidence=chk.confidence, residual=chk.residual, rendered=chk.rendered)

    def _refine_from(self, images: np.ndarray, focus_m: Sequence[float], depth: np.ndarray, aif: np.ndarray,
                     tick: Callable[[int, float], None] | None, grid: _LazyCostGrid) -> tuple[np.ndarray, np.ndarray]:
        """Fit, propagate and filter from ``depth`` ``(H, W)`` metres and ``aif`` ``(H, W, 3)``, then (second
        pass) once more from that result; returns the refined ``(depth, aif)``."""
        near_m, far_m = self.working_range_m
        cfg = self.config
        passes = [cfg]
        if cfg.has_second_pass:
            passes.append(replace(cfg, scales=cfg.second_scales, iterations=cfg.second_iterations))
        for stages in passes:
            if cfg.sweep_rounds > 0 and int(sum(stages.iterations)) == 0:
                continue  # the fast refinement: sweep rounds only
            depth, aif = refine_prediction(images, focus_m, self.lens, depth, aif, near_m, far_m, stages,
                                           device=self.device, on_iteration=tick)
            depth = self._fill(images, focus_m, depth, aif, grid)
        if cfg.sweep_rounds > 0:
            import torch

            from model.defocus_sweep import sweep_depth

            dev = self.device or ("cuda" if torch.cuda.is_available() else "cpu")  # where the fit and the fill run
            for i in range(cfg.sweep_rounds):
                depth = sweep_depth(images, focus_m, self.lens, depth, self.working_range_m, device=dev)
                depth = self._fill(images, focus_m, depth, aif, grid)
                if tick is not None:
                    tick(i, math.nan)
        return depth, aif

    def _arbitrate(self, grid: _LazyCostGrid, first: tuple[np.ndarray, np.ndarray],
                   far: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """The far start's ``(depth, aif)`` when its mean relative-blur cost is lower than the first start's by
        at least ``far_start_min_gain`` of it (and, with ``far_start_min_t``, consistently so over the image's
        blocks), else the first start's (whole maps: chosen per pixel or per 61 x 61 region, the choice followed
        the cost's noise, ``docs/refine.md``)."""
        cfg = self.config
        cost = grid.get().at(np.stack([first[0], far[0]]))
        mean_first, mean_far = float(cost[0].mean()), float(cost[1].mean())
        if not mean_far < (1.0 - cfg.far_start_min_gain) * mean_first:
            return first
        if cfg.far_start_min_t > 0:
            if not block_t_statistic(cost[0] - cost[1], cfg.far_start_block) > cfg.far_start_min_t:
                return first
        return far

    def _fill(self, images: np.ndarray, focus_m: Sequence[float], depth: np.ndarray, aif: np.ndarray,
              grid: _LazyCostGrid) -> np.ndarray:
        """Propagate into untrusted pixels and filter, as configured; returns the ``(H, W)`` depth, metres.
        ``grid``: the stack's relative-blur cost (made on first use, shared by the whole refinement)."""
        near_m, far_m = self.working_range_m
        cfg = self.config
        if cfg.propagate and cfg.propagate_strength > 0:
            trust = self._check(images, focus_m, depth, aif).confidence.astype(np.float64)
            if cfg.propagate_texture_tau > 0:
                trust = trust * -np.expm1(-self._texture(images, focus_m, depth, aif) / cfg.propagate_texture_tau)
            if cfg.propagate_cost_agreement or cfg.propagate_cost_distinct > 0:
                trust = trust * self._cost_support(grid, depth)
            depth = propagate_depth(depth, aif, trust, cfg.propagate_strength,
                                    cfg.propagate_colour_sigma, cfg.propagate_confidence_power,
                                    cfg.propagate_iterations, device=self.device, space=cfg.propagate_space)
            depth = np.clip(depth, near_m, far_m).astype(np.float32)
        if cfg.median_radius > 0:
            depth = weighted_median_depth(depth, aif, cfg.median_radius, cfg.median_colour_sigma, device=self.device)
        return depth

    def _texture(self, images: np.ndarray, focus_m: Sequence[float], depth: np.ndarray, aif: np.ndarray) -> np.ndarray:
        """The ``(H, W)`` texture that the propagation's trust uses (``config.propagate_texture_from``)."""
        window, source = self.config.propagate_texture_window, self.config.propagate_texture_from
        tex = aif_texture(aif, window, self.device) if source in ("aif", "both") else None
        if source == "aif":
            return tex
        in_focus = focus_texture(images, np.asarray(focus_m, np.float64), depth, window, self.device)
        return in_focus if tex is None else np.minimum(tex, in_focus)

    def _cost_support(self, grid: _LazyCostGrid, depth: np.ndarray) -> np.ndarray:
        """The ``(H, W)`` factor in ``[0, 1]`` the relative-blur cost puts on the trust (``config.propagate_cost_*``)."""
        cfg = self.config
        agreement, distinctness = grid.get().support(depth)
        factor = agreement.astype(np.float64) if cfg.propagate_cost_agreement else np.ones(depth.shape)
        if cfg.propagate_cost_distinct > 0:
            factor = factor * np.clip(distinctness / cfg.propagate_cost_distinct, 0.0, 1.0)
        return factor

    def _check(self, images: np.ndarray, focus_m: Sequence[float], depth: np.ndarray, aif: np.ndarray):
        from model.confidence import check_prediction

        return check_prediction(images, focus_m, aif, depth, self.lens, device=self.device,
                                blur_scale=self.config.psf_sigma_scale)


def block_t_statistic(diff: np.ndarray, block: int) -> float:
    """How consistently ``diff`` ``(H, W)`` is positive over the image: the means of its non-overlapping ``block`` x
    ``block`` pixel blocks (the last partial row and column of blocks left out), their mean divided by its standard
    error (``std / sqrt(blocks)``, ``ddof=1``).

    0 with fewer than two whole blocks or where every block mean is 0; +-inf where the block means are all equal
    and not 0.
    """
    d = np.asarray(diff, np.float64)
    if d.ndim != 2 or int(block) < 1:
        raise ValueError(f"diff must be (H, W) and block >= 1, got shape {d.shape} and block {block}")
    hb, wb = d.shape[0] // block, d.shape[1] // block
    if hb * wb < 2:
        return 0.0
    means = d[:hb * block, :wb * block].reshape(hb, block, wb, block).mean(axis=(1, 3)).ravel()
    mean, sd = float(means.mean()), float(means.std(ddof=1))
    if sd == 0.0:
        return 0.0 if mean == 0.0 else math.copysign(math.inf, mean)
    return mean / (sd / math.sqrt(means.size))


class _LazyCostGrid:
    """A stack's relative-blur cost grid (:func:`model.defocus_sweep.cost_grid`), made on first use and then
    reused: it depends on the stack, lens and working range only, so one refinement needs it once (the far
    start's arbitration and, with ``propagate_cost_*``, every propagation)."""

    def __init__(self, images: np.ndarray, focus_m: Sequence[float], lens: LensProfile,
                 working_range_m: tuple[float, float]) -> None:
        self._args = (images, focus_m, lens, working_range_m)
        self._grid: CostGrid | None = None

    def get(self) -> CostGrid:
        """The :class:`model.defocus_sweep.CostGrid` (computed on the first call)."""
        if self._grid is None:
            from model.defocus_sweep import cost_grid

            self._grid = cost_grid(*self._args)
        return self._grid
