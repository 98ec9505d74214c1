"""The one config object of ``python -m model.train`` (YAML file + ``key=value`` overrides)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from model.losses import LossWeights

__all__ = ["TrainConfig"]


@dataclass
class TrainConfig:
    """Everything a training run needs; saved beside every checkpoint as ``config.yaml``.

    Paths are relative to the working directory. ``lens: null`` means the shipped default lens.
    """

    out_dir: str = "runs/daifnet"
    lens: str | None = None
    focus_m: list[float] = field(default_factory=lambda: [1.0, 1.5, 2.5, 4.0, 6.0])
    near_m: float | None = None
    far_m: float | None = None
    width: int = 16
    depth: int = 4
    # lens-aware (one model for every lens): each batch draws a lens with blur gain K in k_range (pixels
    # per dioptre), a focus set of stack_size_min..stack_size_max frames and a scene (model.lens_sampling);
    # the network codes focus and depth on the blur axis K/d (model.network, focus_code "blur")
    lens_aware: bool = False
    k_range: list[float] = field(default_factory=lambda: [1.0, 12.0])
    weak_texture: float = 0.0  # probability that a surface's texture contrast is cut to 3-30 %
    # lens-aware focus sets: farthest focus code K/d_f (pixels, log-uniform) and the set's spread in pixels
    # (uniform); null: anywhere on the network's axis (model.lens_sampling.LensSampling)
    far_focus_px: list[float] | None = None
    focus_span_px: list[float] | None = None
    # share of batches whose whole scene lies beyond the farthest focus / around the nearest focus
    far_scene_prob: float = 0.0
    near_scene_prob: float = 0.0
    disc_prob: float = 0.0  # share of batches rendered by the layered uniform-disc renderer (occlusion)
    vignetting: float = 0.0  # largest corner fall-off of a random vignette (0.2 = 20 %)
    # PSF of each batch, probabilities [gaussian, disc, generalised]: the Gaussian training renderer, the layered
    # renderer with a uniform disc, or with a generalised Gaussian exp(-(r/a)^beta) of the same second moment,
    # beta log-uniform in psf_beta (2 = Gaussian, 4-8 = a soft-edged disc); null = [1 - disc_prob, disc_prob, 0]
    # (give psf_mix or disc_prob). CPU time to render a batch of 4 stacks of 5 frames at 64x64 (one thread,
    # median of about 20): Gaussian 140 ms, disc 60 ms, generalised 140-150 ms (scenes not included).
    psf_mix: list[float] | None = None
    psf_beta: list[float] = field(default_factory=lambda: [2.0, 8.0])
    # smallest per-axis blur of layered batches' PSF, pixels, in quadrature: 0.29 = one pixel's box footprint
    psf_min_blur_px: float = 0.0
    # residual focus breathing, a fraction of the thin-lens breathing (0 = off): per stack e ~ U(-b, b), frame i
    # magnified by breathing_magnification(focus_i, nearest focus)^e about a random optical centre. The device
    # aligns each sweep for breathing before inference (device.align), so the network meets only what that
    # thin-lens alignment leaves (a real lens's different breathing, an off-centre axis): use 0.1-0.2. Shipped lens,
    # focus 1-6 m, 320x240: full breathing moves a corner pixel 8.4 px; 0.1 at most 0.85 px (about 0.2 px typical).
    # 1 covers stacks that were never aligned.
    breathing: float = 0.0
    # a folder of extra training photographs (scripts/get_photos.sh -> data/photos); null = scikit-image's only
    photo_dir: str | None = None

    # data: "synthetic" (procedural scenes, rendered on the fly), "folder" (your focal-stack/1 folders
    # under data_dir, e.g. recorded by device.capture --record), "rgbd" (an RGB-D folder rendered on the fly)
    # or "gpu_synthetic" (procedural scenes made and rendered in PyTorch on the training device, no workers)
    # or "distill" (crops of teacher groups under data_dir, made by python -m model.distill make: synthetic stacks
    # labelled by the fast refinement; the loss.distill term pulls the network's depth towards the teacher's)
    data: str = "synthetic"
    data_dir: str | None = None
    focus_mode: str = "fixed"  # "fixed": the focus_m above (optionally jittered); "bins": one per focus bin
    focus_jitter: float = 0.0  # relative jitter of the focus distances in dioptres (fixed mode)
    stack_size_min: int = 5
    stack_size_max: int = 5
    crop: int = 128
    scene_near_m: float | None = None
    scene_far_m: float | None = None
    noise: float = 0.01

    batch_size: int = 8
    steps: int = 20000
    lr: float = 5e-4
    weight_decay: float = 5e-4
    warmup_steps: int = 200
    grad_clip: float = 1.0
    max_psf_radius: int = 24
    amp: bool = True
    num_workers: int = 1
    seed: int = 0
    device: str | None = None
    # CPU threads of the training process (torch.set_num_threads; data workers use one each); null = torch's
    # default, one per core. On a 2-core machine that is shared (tests, a second run), 1 avoids OpenMP
    # oversubscription: over 100 s there, one run at 2 threads made 152 steps of relblur.yaml, two runs at
    # 1 thread side by side 106 + 101; a 2-thread run beside a pytest run slowed from ~0.6 to ~12 s/step
    threads: int | None = None

    init: str | None = None  # start from this checkpoint's weights (fine-tuning)
    # keep batch-norm running statistics as loaded (fine-tuning on small crops: updating them from
    # 64x64 training batches alone cost 0.065 delta1 on the tuning split within 30 steps at zero learning rate)
    freeze_bn: bool = False
    # exponential moving average of the weights (0 = off, e.g. 0.999): validated, and saved as best.pt;
    # last.pt keeps the raw weights and the average, so a resumed run continues both
    ema_decay: float = 0.0
    resume: bool = True  # continue from out_dir/last.pt when it exists

    log_every: int = 25
    ckpt_every: int = 250
    val_every: int = 500
    val_stacks: int = 16
    # validate on an evaluation-suite folder (python -m model.eval_suite make --split tune) instead of
    # synthetic batches; best.pt is then the best checkpoint on that tuning split (never the test split)
    val_suite: str | None = None
    image_every: int = 500

    loss: LossWeights = field(default_factory=LossWeights)

    def validate(self) -> None:
        """Raise ``ValueError`` for inconsistent settings, before any work is done."""
        if self.data not in ("synthetic", "folder", "rgbd", "gpu_synthetic", "distill"):
            raise ValueError(f"data must be synthetic, folder, rgbd, gpu_synthetic or distill, got {self.data!r}")
        if self.data in ("folder", "rgbd", "distill") and not self.data_dir:
            raise ValueError(f"data={self.data} needs data_dir=PATH")
        if self.focus_mode not in ("fixed", "bins"):
            raise ValueError(f"focus_mode must be fixed or bins, got {self.focus_mode!r}")
        if len(self.focus_m) < 2:
            raise ValueError("focus_m needs at least 2 focus distances")
        if not 2 <= self.stack_size_min <= self.stack_size_max:
            raise ValueError("need 2 <= stack_size_min <= stack_size_max")
        for k in ("batch_size", "steps", "crop", "log_every", "ckpt_every", "val_every", "image_every", "max_psf_radius"):
            if getattr(self, k) < 1:
                raise ValueError(f"{k} must be >= 1")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1 (or null for one per core), got {self.threads}")
        if self.max_psf_radius > 64:
            raise ValueError(f"max_psf_radius must be at most 64 (the renderer's largest window), got {self.max_psf_radius}")
        if self.crop % 16:
            raise ValueError(f"crop must be a multiple of 16, got {self.crop}")
        if len(self.k_range) != 2 or not 0 < self.k_range[0] <= self.k_range[1]:
            raise ValueError(f"k_range must be [min, max] pixels per dioptre with 0 < min <= max, got {self.k_range}")
        for name in ("far_focus_px", "focus_span_px"):
            v = getattr(self, name)
            if v is not None and (len(v) != 2 or not 0 < v[0] <= v[1]):
                raise ValueError(f"{name} must be [min, max] pixels with 0 < min <= max, got {v}")
        if not (0 <= self.far_scene_prob <= 1 and 0 <= self.near_scene_prob <= 1
                and self.far_scene_prob + self.near_scene_prob <= 1):
            raise ValueError("far_scene_prob and near_scene_prob must be probabilities summing to at most 1")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if not 0 <= self.disc_prob <= 1:
            raise ValueError(f"disc_prob must be a probability in [0, 1], got {self.disc_prob}")
        if not 0 <= self.vignetting < 1:
            raise ValueError(f"vignetting must be in [0, 1), got {self.vignetting}")
        if self.psf_mix is not None:
            if len(self.psf_mix) != 3 or min(self.psf_mix) < 0 or abs(sum(self.psf_mix) - 1) > 1e-6:
                raise ValueError(f"psf_mix must be [gaussian, disc, generalised] probabilities summing to 1, got {self.psf_mix}")
            if self.disc_prob:
                raise ValueError(f"give psf_mix or disc_prob, not both (disc_prob {self.disc_prob} is psf_mix "
                                 f"[{1 - self.disc_prob:g}, {self.disc_prob:g}, 0])")
        if len(self.psf_beta) != 2 or not 1 <= self.psf_beta[0] <= self.psf_beta[1]:
            raise ValueError(f"psf_beta must be [min, max] with 1 <= min <= max, got {self.psf_beta}")
        if not 0 <= self.psf_min_blur_px <= 4:
            raise ValueError(f"psf_min_blur_px must be in [0, 4] pixels (0.29 = one pixel's box), got {self.psf_min_blur_px}")
        if not 0 <= self.breathing <= 1:
            raise ValueError(f"breathing must be in [0, 1] (a fraction of the thin-lens breathing), got {self.breathing}")
        if self.photo_dir is not None and not os.path.isdir(self.photo_dir):
            raise ValueError(f"photo_dir {self.photo_dir}: no such folder (fetch photos with scripts/get_photos.sh, or set photo_dir=null)")
        if not 0 <= self.weak_texture <= 1:
            raise ValueError(f"weak_texture must be a probability in [0, 1], got {self.weak_texture}")
        if self.lens_aware and self.data not in ("synthetic", "gpu_synthetic") and self.init is None:
            raise ValueError("lens_aware training from scratch needs data=synthetic or gpu_synthetic (a folder run fine-tunes: set init=...)")
        if self.lr <= 0:
            raise ValueError("lr must be positive")
