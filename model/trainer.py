"""The training logic behind ``python -m model.train`` (monodepth2-style ``Trainer``).

One step: the network predicts AIF and depth from the stack; the thin-lens model turns depth into a blur
map per slice; the Gaussian PSF re-renders the stack from the AIF; the losses of :mod:`model.losses`
compare it with the input. No depth or AIF ground truth is used for training (synthetic data carries
depth only for the validation numbers).

Checkpoints (``last.pt`` every ``ckpt_every`` steps and on Ctrl-C/SIGTERM, ``best.pt`` by validation
AbsRel, or when fine-tuning on your own stacks with ``holdout_every`` by the re-rendering loss of the
stacks held back) are atomic and carry the lens, the focus distances and the config; ``config.yaml`` is written
beside them. A run restarted with the same ``out_dir`` resumes from ``last.pt``.

Validation and TensorBoard images: :mod:`model.train_validation`; the held-back stacks when fine-tuning:
:mod:`model.train_holdout`.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import signal
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import yaml

from model.atomic import atomic_write_text
from model.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from model.config import config_to_dict
from model.errors import CheckpointError
from model.lens import LensProfile
from model.losses import distill_loss, edge_aware_smoothness, log_sharpness, recon_loss, relative_blur_loss, soft_coarse_aif
from model.network import DAIFNet, NetConfig, lens_aware_config
from model.optics import working_range_m
from model.train_config import TrainConfig
from model.train_holdout import (StackSubset, held_back_stacks, holdout_batches, holdout_indices,
                                 holdout_summary, update_holdout_best, validate_holdout_start)
from model.train_validation import batch_metrics, log_images, suite_metrics, suite_stacks, synthetic_val_batches

__all__ = ["Trainer", "default_lens_path", "ignore_stop_signals", "holdout_indices", "time_estimate"]

log = logging.getLogger(__name__)

#: steps timed for the time estimate, after the first (which includes start-up)
_ETA_STEPS = 3


def default_lens_path() -> Path:
    """The lens profile shipped with the default model."""
    return Path(__file__).resolve().parent / "default" / "lens.json"


def _lr_lambda(warmup: int, total: int):
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * t))

    return f


def ignore_stop_signals(worker_id: int = 0) -> None:
    """DataLoader ``worker_init_fn``: data workers ignore Ctrl-C and SIGTERM.

    Both reach the whole process group (a terminal's Ctrl-C, ``timeout``, a batch scheduler); the main
    process then finishes its step, saves ``last.pt`` and shuts the workers down itself, rather than
    stopping on a "DataLoader worker exited unexpectedly" error.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def time_estimate(steps: int, s_per_step: float, resumed_at: int = 0) -> str:
    """``"2,000 steps, about 3.8 h at 6.9 s/step on this machine"`` (``steps`` still to run)."""
    left = f" (from step {resumed_at:,})" if resumed_at else ""
    return f"{steps:,} steps{left}, about {_duration(steps * s_per_step)} at {s_per_step:.3g} s/step on this machine"


class Trainer:
    """Builds the network, data, optimiser and logging from a :class:`TrainConfig` and trains.

    Args:
        cfg: the run's config (validated here).
        progress: show a progress bar (rank 0 only).
        holdout_every: with ``data: folder`` (fine-tuning on your own stacks), hold back 1 in N of the
            stacks (at least one of two or more; :func:`holdout_indices`) from training: their
            re-rendering loss (self-supervised, no depth needed) is validated at the start and every
            ``val_every`` steps and chooses ``best.pt`` (the start weights until a step beats them;
            :meth:`holdout_report`; :mod:`model.train_holdout`). 0: train on every stack. Not with ``val_suite`` (that chooses then).
    """

    def __init__(self, cfg: TrainConfig, progress: bool = True, holdout_every: int = 0) -> None:
        cfg.validate()
        if isinstance(holdout_every, bool) or not isinstance(holdout_every, int) or holdout_every < 0 or holdout_every == 1:
            raise ValueError(f"holdout_every must be 0 (none) or a whole number >= 2 (1 in N stacks held back), got {holdout_every!r}")
        self.cfg = cfg
        self.progress = progress
        self.holdout_every = holdout_every if cfg.data == "folder" and not cfg.val_suite else 0
        self.holdout_start: tuple[int, float] | None = None  # (step, held-back re-rendering loss) where validation began
        self.holdout_best: tuple[int, float] | None = None  # (step, loss) of best.pt
        self.holdout_last: tuple[int, float] | None = None  # the latest validation
        self.holdout_stacks: list[str] = []  # the held-back stack folders, once listed (_held_back)
        self.holdout_n_stacks = 0  # how many stacks data_dir holds, once listed
        self.out_dir = Path(cfg.out_dir)
        self._setup_distributed()
        self.device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if self.device.type == "cuda" and self.world_size > 1:
            self.device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(self.device)
        if cfg.threads is not None:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed + self.rank)
        np.random.seed(cfg.seed + self.rank)

        self.lens = LensProfile.load(cfg.lens) if cfg.lens else LensProfile.load(default_lens_path())
        self.focus_m = sorted(float(f) for f in cfg.focus_m)
        near, far = working_range_m(self.focus_m, self.lens)
        near = cfg.near_m or near
        far = cfg.far_m or far
        self.step = 0
        self.best_abs_rel = math.inf
        init_state = None
        if cfg.init:
            init = load_checkpoint(cfg.init)
            net_cfg = init.net.config
            if cfg.lens_aware and net_cfg.focus_code != "blur":
                # same weights, same outputs for the checkpoint's lens; now coded on the blur axis
                net_cfg = lens_aware_config(net_cfg, init.lens)
            init_state = init.net.state_dict()
            if cfg.resume and (self.out_dir / "last.pt").is_file():
                log.info("%s holds a run: resuming it (its weights, not %s's; resume=false or a new out_dir starts afresh)",
                         self.out_dir / "last.pt", cfg.init)
            else:
                log.info("fine-tuning from %s (step %d)", cfg.init, init.step)
        elif cfg.lens_aware:
            ref = NetConfig(width=cfg.width, depth=cfg.depth, near_m=near, far_m=far)
            net_cfg = lens_aware_config(ref, self.lens)
        else:
            net_cfg = NetConfig(width=cfg.width, depth=cfg.depth, near_m=near, far_m=far)
        self.net = DAIFNet(net_cfg).to(self.device)
        self.net.set_lens(self.lens)
        if init_state is not None:
            self.net.load_state_dict(init_state)
        self.optimizer = torch.optim.AdamW(self.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, _lr_lambda(cfg.warmup_steps, cfg.steps))
        self.use_amp = bool(cfg.amp and self.device.type == "cuda")
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.ema: DAIFNet | None = None
        if cfg.ema_decay > 0:
            self.ema = copy.deepcopy(self.net).eval().requires_grad_(False)
        if cfg.resume:
            self._maybe_resume()
        self.model: torch.nn.Module = self.net
        if self.world_size > 1:
            self.model = torch.nn.parallel.DistributedDataParallel(
                self.net, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        self._stop = False
        self._saved_step = self.step
        self.writer = None

    # ------------------------------------------------------------------ setup

    def _setup_distributed(self) -> None:
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if self.world_size > 1 and not torch.distributed.is_initialized():
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            torch.distributed.init_process_group(backend)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def _maybe_resume(self) -> None:
        last = self.out_dir / "last.pt"
        if not last.is_file():
            return
        obj = read_checkpoint(last, map_location=self.device)
        saved_lens = LensProfile.from_dict(obj["lens"])
        if saved_lens.thin_lens_dict() != self.lens.thin_lens_dict() or sorted(obj["focus_m"]) != self.focus_m:
            raise CheckpointError(
                f"{last}: was trained for another lens or other focus distances; use a new out_dir or resume=false"
            )
        self.net.load_state_dict(obj["state_dict"])
        if "optimizer" in obj:
            self.optimizer.load_state_dict(obj["optimizer"])
        if "scheduler" in obj:
            self.scheduler.load_state_dict(obj["scheduler"])
        if self.ema is not None:
            self.ema.load_state_dict(obj.get("ema_state_dict") or obj["state_dict"])
        self.step = int(obj.get("step", 0))
        self.best_abs_rel = float(obj.get("best_abs_rel", math.inf))
        ho = obj.get("holdout") or {}
        if self.holdout_every and ho.get("start"):
            self.holdout_start, self.holdout_best = tuple(ho["start"]), tuple(ho.get("best") or ho["start"])  # type: ignore[assignment]
        log.info("resumed from %s at step %d", last, self.step)

    def training_data(self, seed: int):
        """The run's stream of training batches for ``seed`` (an ``IterableDataset``, or for ``gpu_synthetic``
        a generator with ``make(i)``): synthetic, folder, RGB-D or teacher-group data as the config says."""
        from model import data as data_mod

        cfg = self.cfg
        if cfg.data == "distill":  # teacher groups (model.distill): crops of stored, labelled synthetic stacks
            from model.distill import TeacherGroups

            return TeacherGroups(cfg.data_dir, cfg.crop, seed=seed)  # type: ignore[arg-type]
        common: dict[str, Any] = dict(
            lens=self.lens,
            focus_m=self.focus_m,
            focus_mode=cfg.focus_mode,
            focus_jitter=cfg.focus_jitter,
            stack_size=(cfg.stack_size_min, cfg.stack_size_max),
            crop=cfg.crop,
            noise=cfg.noise,
            batch_size=cfg.batch_size,
            seed=seed,
            max_psf_radius=cfg.max_psf_radius,
            scene_near_m=cfg.scene_near_m,
            scene_far_m=cfg.scene_far_m,
            working_range_m=self.net.working_range_m(),
        )
        if cfg.data == "folder" and self.holdout_every:  # the held-back stacks are not trained on
            ds = data_mod.build_training_data(cfg.data, cfg.data_dir, **common)
            held = set(self._held_back())
            keep = [i for i in range(len(ds.dataset)) if i not in held]
            return data_mod.RandomBatches(StackSubset(ds.dataset, keep), cfg.batch_size,
                                          (cfg.stack_size_min, cfg.stack_size_max), seed=seed)
        if cfg.lens_aware and cfg.data in ("synthetic", "gpu_synthetic"):
            from model.lens_sampling import LensSampling

            common["lens_sampling"] = LensSampling(
                k_range=(float(cfg.k_range[0]), float(cfg.k_range[1])),
                x_range=(self.net.config.x_lo_px, self.net.config.x_hi_px),
                stack_size=(cfg.stack_size_min, cfg.stack_size_max),
                far_focus_px=tuple(cfg.far_focus_px) if cfg.far_focus_px else None,
                focus_span_px=tuple(cfg.focus_span_px) if cfg.focus_span_px else None,
                far_scene_prob=cfg.far_scene_prob,
                near_scene_prob=cfg.near_scene_prob,
            )
            common["weak_texture_prob"] = cfg.weak_texture
        elif cfg.weak_texture:
            common["weak_texture_prob"] = cfg.weak_texture
        if cfg.data != "folder":
            common.update(disc_prob=cfg.disc_prob, vignetting=cfg.vignetting,
                          psf_mix=cfg.psf_mix, psf_beta_range=tuple(cfg.psf_beta),
                          psf_min_sigma_px=cfg.psf_min_blur_px, breathing=cfg.breathing, photo_dir=cfg.photo_dir)
        if cfg.data == "gpu_synthetic":  # the same SynthConfig as data=synthetic, made and rendered on self.device
            from model.synth.gpu_batches import DeviceBatches

            return DeviceBatches(data_mod.build_training_data("synthetic", None, **common).config, self.device)
        return data_mod.build_training_data(cfg.data, cfg.data_dir, **common)

    def _batches(self) -> Iterator[dict[str, torch.Tensor]]:
        if self.cfg.data == "gpu_synthetic":
            # made in this process on self.device (no workers); batch i of the run is make(i) under one seed per rank,
            # so a resumed run continues the stream an uninterrupted run would have seen
            gen = self.training_data(seed=self.cfg.seed * 1000003 + self.rank)
            i = self.step
            while True:
                yield gen.make(i)
                i += 1
        ds = self.training_data(seed=self.cfg.seed * 1000003 + self.step * 7 + self.rank)
        loader = torch.utils.data.DataLoader(
            ds,
            batch_size=None,
            num_workers=self.cfg.num_workers,
            persistent_workers=self.cfg.num_workers > 0,
            prefetch_factor=2 if self.cfg.num_workers > 0 else None,
            worker_init_fn=ignore_stop_signals if self.cfg.num_workers > 0 else None,
        )
        while True:
            yield from loader

    # ------------------------------------------------------------------ one step

    def process_batch(
        self, batch: dict[str, torch.Tensor], model: torch.nn.Module | None = None
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Forward pass and losses. Returns ``(outputs, losses)``; ``losses["total"]`` is optimised.

        ``model`` defaults to the training model (the DDP wrapper when distributed); validation passes the
        bare network, since a DDP forward is a collective that only one rank would join.
        """
        from model.render import rerender_stack

        images = batch["images"].to(self.device, non_blocking=True)
        focus = batch["focus_m"].to(self.device, non_blocking=True)
        lens, k = self.lens, None
        if "lens" in batch:  # a lens drawn for this batch (lens-aware training); one lens per batch
            f_m, n, p = (float(v) for v in batch["lens"][0])
            lens = LensProfile(focal_length_m=f_m, f_number=n, pixel_pitch_m=p, name="training-draw")
            k = batch["k"].to(self.device)
        with torch.autocast(self.device.type, enabled=self.use_amp, dtype=torch.float16):
            out = (model or self.model)(images, focus, k)
        aif = out.aif.float()
        depth = out.depth_m.float()
        rendered, sigma = rerender_stack(aif, depth, focus, lens, max_radius=self.cfg.max_psf_radius)
        outputs = {"aif": aif, "depth_m": depth, "sigma": sigma, "rendered": rendered, "images": images}
        if "teacher_depth" in batch:  # data: distill (model.distill)
            outputs["teacher_depth"] = batch["teacher_depth"].to(self.device, non_blocking=True)
        return outputs, self.compute_losses(images, outputs)

    def compute_losses(self, images: torch.Tensor, outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The weighted loss terms (see :mod:`model.losses`)."""
        w = self.cfg.loss
        recon = recon_loss(outputs["rendered"], images, w.ssim_alpha)
        coarse = soft_coarse_aif(images, outputs["sigma"], w.coarse_temperature_px)
        aif = outputs["aif"]
        terms = {
            "recon": recon,
            "coarse": (aif - coarse.detach()).abs().mean(),
            "aif_blur": log_sharpness(aif),
            "coarse_blur": log_sharpness(coarse),
            "smooth": edge_aware_smoothness(outputs["depth_m"], aif, w.smooth_beta),
        }
        total = (
            w.recon * terms["recon"]
            + w.coarse * terms["coarse"]
            + w.aif_blur * terms["aif_blur"]
            + w.coarse_blur * terms["coarse_blur"]
            + w.smooth * terms["smooth"]
        )
        if w.relblur > 0:
            terms["relblur"] = relative_blur_loss(images, outputs["sigma"], w.ssim_alpha, self.cfg.max_psf_radius or 16)
            total = total + w.relblur * terms["relblur"]
        if w.distill > 0 and "teacher_depth" in outputs:
            terms["distill"] = distill_loss(outputs["depth_m"], outputs["teacher_depth"])
            total = total + w.distill * terms["distill"]
        terms["total"] = total
        return terms

    # ------------------------------------------------------------------ validation, EMA, saving

    def _held_back(self) -> list[int]:
        """Indices (in :func:`model.formats.find_stacks` order) of the folder stacks held back for validation."""
        if not hasattr(self, "_held_cache"):
            self._held_cache, self.holdout_stacks, self.holdout_n_stacks = held_back_stacks(self.cfg.data_dir, self.holdout_every)  # type: ignore[arg-type]
        return self._held_cache

    def _val_set(self) -> list[dict[str, torch.Tensor]]:
        """The fixed validation batches (made once): synthetic, or the held-back stacks when fine-tuning."""
        if not hasattr(self, "_val_cache"):
            if self.cfg.data in ("synthetic", "gpu_synthetic"):
                self._val_cache = synthetic_val_batches(self.cfg, lambda seed: self.training_data(seed=seed))
            elif self.holdout_every:
                self._val_cache = holdout_batches(self.cfg, self.lens, self.focus_m, self._held_back())
            else:
                self._val_cache = []
        return self._val_cache

    @torch.no_grad()
    def _update_ema(self) -> None:
        """``ema <- d ema + (1 - d) net`` for the weights; buffers (batch-norm statistics) are copied."""
        if self.ema is None:
            return
        d = self.cfg.ema_decay
        for pe, p in zip(self.ema.parameters(), self.net.parameters()):
            pe.mul_(d).add_(p.detach(), alpha=1.0 - d)
        for be, b in zip(self.ema.buffers(), self.net.buffers()):
            be.copy_(b)

    @property
    def eval_net(self) -> DAIFNet:
        """The network that is validated and saved as ``best.pt``: the weight average when ``ema_decay`` is set."""
        return self.ema if self.ema is not None else self.net

    def _train_mode(self) -> None:
        """Training mode; with ``freeze_bn`` the batch-norm layers stay in eval mode (their running
        statistics are kept as loaded; their scale and shift still learn)."""
        self.net.train()
        if self.cfg.freeze_bn:
            for m in self.net.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.eval()

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Depth metrics on a fixed validation set (diagnostic, or model selection with ``val_suite``; never
        used as a training signal): the ``val_suite`` folder, else synthetic batches (with their re-rendering loss).
        See :mod:`model.train_validation`."""
        if self.cfg.val_suite:
            if not hasattr(self, "_suite_cache"):
                self._suite_cache = suite_stacks(Path(self.cfg.val_suite))
            res = suite_metrics(self.eval_net, self._suite_cache, self.device)
        else:
            batches = self._val_set()
            if not batches:
                return {}
            res = batch_metrics(self.eval_net, batches, self.process_batch)
        self._train_mode()
        return res

    def save(self, name: str = "last.pt", slim: bool = False) -> Path:
        """Save a checkpoint in ``out_dir`` (atomic). ``slim`` (``best.pt``) leaves out the optimiser state and
        holds :attr:`eval_net` (the weight average with ``ema_decay``); otherwise the raw weights plus the average."""
        path = self.out_dir / name
        if name == "last.pt":
            self._saved_step = self.step
        extra: dict[str, Any] = {"best_abs_rel": self.best_abs_rel, "metrics": getattr(self, "last_metrics", {})}
        if self.holdout_start is not None:
            self._held_back()
            extra["holdout"] = {"every": self.holdout_every, "stacks": self.holdout_stacks,
                                "start": list(self.holdout_start), "best": list(self.holdout_best or self.holdout_start)}
        if self.ema is not None and not slim:
            extra["ema_state_dict"] = {k: v.detach().cpu() for k, v in self.ema.state_dict().items()}
        save_checkpoint(
            path,
            self.eval_net if slim else self.net,
            self.lens,
            self.focus_m,
            config=config_to_dict(self.cfg),
            step=self.step,
            optimizer=None if slim else self.optimizer.state_dict(),
            scheduler=None if slim else self.scheduler.state_dict(),
            extra=extra,
        )
        return path

    def _write_config(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.out_dir / "config.yaml", yaml.safe_dump(config_to_dict(self.cfg), sort_keys=False))
        self.lens.save(self.out_dir / "lens.json")

    def _install_signal_handlers(self) -> None:
        def handler(signum: int, frame: Any) -> None:
            log.warning("signal %d: saving and stopping after this step", signum)
            self._stop = True

        try:
            signal.signal(signal.SIGTERM, handler)
            signal.signal(signal.SIGINT, handler)
        except ValueError:  # not the main thread (tests)
            pass

    def holdout_report(self) -> list[str]:
        """What the held-back validation says about the run, one line each (empty without one): the start,
        best and latest re-rendering loss, and a ``warning:`` line when the result is worse than the start."""
        return holdout_summary(self.holdout_start, self.holdout_best, self.holdout_last, self.holdout_stacks, self.out_dir)

    # ------------------------------------------------------------------ loop

    def train(self) -> dict[str, float]:
        """Train until ``cfg.steps``; returns the last validation metrics."""
        from tqdm import tqdm

        cfg = self.cfg
        if self.is_main:
            self._write_config()
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(self.out_dir / "tb"), purge_step=self.step)
            except ImportError:
                log.warning("tensorboard is not installed: no TensorBoard logs (pip install tensorboard)")
        self._install_signal_handlers()
        self._train_mode()
        metrics: dict[str, float] = {}
        if self.step >= cfg.steps:
            log.info("already at step %d of %d", self.step, cfg.steps)
            return self.validate() if self.is_main else {}
        if self.is_main and cfg.val_suite and self.best_abs_rel == math.inf:
            start = self.validate()
            log.info("step %d val (start) %s", self.step, {k: round(v, 4) for k, v in start.items()})
            if start:
                self.best_abs_rel = start["abs_rel"]
                self.save("best.pt", slim=True)
        if self.is_main and self.holdout_every and self.holdout_start is None:
            validate_holdout_start(self)
        bar = tqdm(total=cfg.steps, initial=self.step, disable=not (self.progress and self.is_main), unit="step", dynamic_ncols=True)
        t0, n0 = time.time(), self.step
        t_eta: float | None = None
        batches = self._batches()
        try:
            for batch in batches:
                outputs, losses = self.process_batch(batch)
                self.optimizer.zero_grad(set_to_none=True)
                self.scaler.scale(losses["total"]).backward()
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.net.parameters(), cfg.grad_clip)
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.scheduler.step()
                self._update_ema()
                self.step += 1
                bar.update(1)
                if self.is_main and self.step - n0 == 1:
                    t_eta = time.time()
                elif self.is_main and t_eta is not None and self.step - n0 == 1 + _ETA_STEPS:
                    log.info("%s (timed over steps %d-%d)", time_estimate(cfg.steps - n0, (time.time() - t_eta) / _ETA_STEPS, n0),
                             n0 + 2, self.step)
                    t_eta = None
                if not torch.isfinite(losses["total"]):
                    raise FloatingPointError(f"loss became {losses['total'].item()} at step {self.step}")
                if self.is_main and self.step % cfg.log_every == 0:
                    rate = (self.step - n0) * cfg.batch_size / max(1e-6, time.time() - t0)
                    bar.set_postfix(loss=f"{losses['total'].item():.3f}", recon=f"{losses['recon'].item():.4f}", stacks_s=f"{rate:.2f}")
                    if self.writer:
                        for k, v in losses.items():
                            self.writer.add_scalar(f"loss/{k}", v.item(), self.step)
                        self.writer.add_scalar("lr", self.scheduler.get_last_lr()[0], self.step)
                        self.writer.add_scalar("stacks_per_s", rate, self.step)
                if self.is_main and self.step % cfg.image_every == 0 and self.writer is not None:
                    log_images(self.writer, outputs, self.step, self.net)
                if self.is_main and (self.step % cfg.val_every == 0 or self.step == cfg.steps):
                    metrics = self.validate()
                    self.last_metrics = metrics
                    if self.writer:
                        for k, v in metrics.items():
                            self.writer.add_scalar(f"val/{k}", v, self.step)
                    log.info("step %d val %s", self.step, {k: round(v, 4) for k, v in metrics.items()})
                    if self.holdout_start is not None:
                        update_holdout_best(self, metrics)
                    elif metrics.get("abs_rel", math.inf) < self.best_abs_rel:
                        self.best_abs_rel = metrics["abs_rel"]
                        self.save("best.pt", slim=True)
                if self.is_main and (self.step % cfg.ckpt_every == 0 or self.step == cfg.steps or self._stop):
                    self.save("last.pt")
                if self._stop or self.step >= cfg.steps:
                    break
        except FloatingPointError:
            raise  # never save diverged weights over a good checkpoint
        except BaseException:
            # e.g. a data-loader worker killed, Ctrl-C twice: keep the last finished step
            if self.is_main and self.step > self._saved_step:
                log.warning("stopping on an error at step %d: saving last.pt first", self.step)
                self.save("last.pt")
            raise
        finally:
            bar.close()
            if self.writer:
                self.writer.flush()
        if self.world_size > 1:
            torch.distributed.barrier()
        return metrics
