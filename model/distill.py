"""Self-distillation of the fast refinement into the network (``data: distill``; issue 13, "physics where it is cheap").

The fast refinement (:data:`model.refine.FAST_REFINE`: the gated relative-blur sweep around the network's depth,
then propagation along colour edges and a colour-weighted median, twice) is far more accurate than the network
alone, but costs seconds per stack and is not in the exported graph. Distilling it puts that accuracy into the
live path: the teacher (a checkpoint wrapped in the fast refinement) labels synthetic training stacks **once**,
offline, and training then adds a term pulling the network's log depth towards the teacher's
(:class:`model.losses.LossWeights` ``distill``). The teacher sees only the stack, its focus distances and its lens
profile — no depth or AIF ground truth, so training stays self-supervised.

Teacher groups are made with :func:`make_teacher_groups` (``python -m model.distill make``). A group is one batch
of the training generator (:meth:`model.trainer.Trainer.training_data`, the same lens and focus set for its
stacks) at ``size`` x ``size`` pixels, stored as ``group_NNNNNN.npz``:

============== ===================== ==================================================================
key            shape, dtype           meaning
============== ===================== ==================================================================
images         (B, S, 3, H, W) uint8 the stacks, 8-bit like a camera's frames
focus_m        (B, S) float32         focus distances, metres
lens           (3,) float64           focal length (m), f-number, pixel pitch (m) of the drawn lens
k              () float32             blur gain K = f^2 / (4 N p), pixels per dioptre
teacher_depth  (B, H, W) float32      the teacher's depth, metres
============== ===================== ==================================================================

``manifest.json`` beside them names the teacher (file and SHA-256) and the generator's settings; a folder made
by another teacher or other settings is refused rather than mixed. Every file is written atomically, groups
already present are skipped, so a killed run resumes where it stopped. ``metrics.jsonl`` logs, for the reader
only, how far network and teacher are from the synthetic truth (never read by training).

:class:`TeacherGroups` serves training batches from such a folder: per batch one group, each stack cropped
at its own random place to ``crop`` pixels and flipped, with ``teacher_depth`` beside the images.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import IterableDataset

from model.atomic import atomic_write_json, atomic_write_with, sha256_file

if TYPE_CHECKING:
    from model.train_config import TrainConfig

__all__ = ["GROUP_PATTERN", "TeacherGroups", "TeacherSpec", "make_teacher_groups", "parse_groups", "teacher_group_files"]

log = logging.getLogger(__name__)

#: file name of group ``i``
GROUP_PATTERN = "group_{:06d}.npz"
_GROUP_RE = re.compile(r"^group_(\d{6})\.npz$")


@dataclass(frozen=True)
class TeacherSpec:
    """What made a folder of teacher groups (``manifest.json``); folders with different specs are not mixed."""

    teacher: str  # checkpoint file name (or "shipped")
    teacher_sha256: str
    refine: str  # "fast": model.refine.FAST_REFINE
    size: int  # group stacks are size x size pixels
    batch_size: int  # stacks per group
    seed: int  # generator seed (group i is Trainer.training_data(seed).make(i))
    config: dict[str, Any]  # the generator's TrainConfig, as a dict


def teacher_group_files(folder: str | os.PathLike[str]) -> list[Path]:
    """The group files of ``folder``, in index order (temporary files of a killed run are ignored)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if _GROUP_RE.match(p.name))


# Settings written to the manifest for the reader but not compared: the teacher is identified by its SHA-256, not
# its file name, and these training-only fields of the config do not change a single generated stack.
_NOT_COMPARED = ("teacher",)
_CONFIG_NOT_COMPARED = ("amp", "depth", "freeze_bn", "grad_clip", "weight_decay", "width")


def _compared(spec: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in spec.items() if k not in _NOT_COMPARED}
    if isinstance(out.get("config"), dict):
        out["config"] = {k: v for k, v in out["config"].items() if k not in _CONFIG_NOT_COMPARED}
    return out


def _check_manifest(out: Path, spec: TeacherSpec) -> None:
    path = out / "manifest.json"
    want = json.loads(json.dumps(asdict(spec)))  # as it reads back
    if path.is_file():
        have, need = _compared(json.loads(path.read_text())), _compared(want)
        if have != need:
            diff = sorted(k for k in set(have) | set(need) if have.get(k) != need.get(k))
            if "config" in diff:
                diff.remove("config")
                hc, nc = have.get("config") or {}, need.get("config") or {}
                diff += sorted(f"config.{k}" for k in set(hc) | set(nc) if hc.get(k) != nc.get(k))
            raise ValueError(f"{out} holds teacher groups made with other settings ({', '.join(diff)} differ); "
                             f"use another --out, or delete the folder to start again")
        return
    if teacher_group_files(out):
        raise ValueError(f"{out} holds group files but no manifest.json: use another --out")
    atomic_write_json(path, want)


def make_teacher_groups(cfg: "TrainConfig", out: str | os.PathLike[str], groups: Sequence[int], size: int = 128,
                        teacher: str | os.PathLike[str] | None = None, threads: int | None = 1,
                        progress: bool = True) -> list[Path]:
    """Label groups ``groups`` of the training generator of ``cfg`` with the fast refinement of ``teacher``.

    Args:
        cfg: a lens-aware training config (its lens sampling, scenes, PSF mix, noise; ``crop`` is replaced by
            ``size``, ``batch_size`` is the stacks per group).
        out: the folder of groups (made; ``manifest.json`` checked or written).
        groups: group indices; those already in ``out`` are skipped.
        size: stack size in pixels (the teacher's context; training crops from it).
        teacher: checkpoint; ``None`` = the shipped model.
        threads: CPU threads (``None``: PyTorch's default).

    Returns the paths written. Raises ``ValueError`` for a non-lens-aware config or a folder made otherwise.
    """
    from dataclasses import replace

    from model.checkpoint import default_checkpoint_path
    from model.lens import LensProfile
    from model.metrics import depth_metrics
    from model.refine import FAST_REFINE, RefiningRunner
    from model.runners import TorchRunner, bind_lens
    from model.trainer import Trainer

    if not cfg.lens_aware or cfg.data != "synthetic":
        raise ValueError("teacher groups need a lens-aware synthetic config (lens_aware: true, data: synthetic)")
    if size % 16 or size < 32:
        raise ValueError(f"size must be a multiple of 16 and at least 32, got {size}")
    if threads is not None:
        torch.set_num_threads(threads)
    out = Path(out)
    teacher_path = Path(teacher) if teacher is not None else default_checkpoint_path()
    gen_cfg = replace(cfg, crop=size, resume=False, device="cpu", threads=threads, out_dir=str(out / "unused"))
    spec = TeacherSpec(teacher=teacher_path.name if teacher is not None else "shipped",
                       teacher_sha256=sha256_file(teacher_path), refine="fast", size=size,
                       batch_size=cfg.batch_size, seed=cfg.seed,
                       config={k: v for k, v in asdict(gen_cfg).items()
                               if k not in ("out_dir", "data", "data_dir", "threads", "device", "resume", "steps", "lr", "init",
                                            "val_suite", "val_every", "val_stacks", "ckpt_every", "log_every",
                                            "image_every", "num_workers", "loss", "ema_decay", "warmup_steps")})
    out.mkdir(parents=True, exist_ok=True)
    _check_manifest(out, spec)
    todo = [int(i) for i in groups if not (out / GROUP_PATTERN.format(int(i))).is_file()]
    if not todo:
        return []
    gen = Trainer(gen_cfg, progress=False).training_data(seed=cfg.seed)
    runner = TorchRunner(teacher_path, device="cpu", with_confidence=False)
    fast = RefiningRunner(runner, FAST_REFINE, device="cpu")
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), desc="teacher groups", unit="group")
    written = []
    try:
        for i in todo:
            batch = gen.make(i)
            f_m, n, p = (float(v) for v in batch["lens"][0])
            lens = LensProfile(focal_length_m=f_m, f_number=n, pixel_pitch_m=p, name="training-draw")
            images8 = (batch["images"].clamp(0, 1) * 255).round().to(torch.uint8)
            teacher_depth, rows = [], []
            for b in range(images8.shape[0]):
                stack = images8[b].permute(0, 2, 3, 1).float().numpy() / 255.0
                fm = batch["focus_m"][b].numpy().astype(float).tolist()
                bind_lens(fast, lens, fm, f"group {i}")
                pred = runner.predict(stack, fm)
                depth = fast.refine(stack, fm, pred).depth_m.astype(np.float32)
                teacher_depth.append(depth)
                truth = batch["depth"][b, 0].numpy()
                mn, mt = depth_metrics(pred.depth_m, truth), depth_metrics(depth, truth)
                rows.append({"group": i, "stack": b, "frames": len(fm), "k": float(batch["k"][b]),
                             "network": [mn["d1"], mn["abs_rel"]], "teacher": [mt["d1"], mt["abs_rel"]]})
            arrays = {"images": images8.numpy(), "focus_m": batch["focus_m"].numpy().astype(np.float32),
                      "lens": np.array([f_m, n, p], dtype=np.float64), "k": np.float32(batch["k"][0]),
                      "teacher_depth": np.stack(teacher_depth)}
            path = atomic_write_with(out / GROUP_PATTERN.format(i), lambda fh: np.savez(fh, **arrays))
            with open(out / "metrics.jsonl", "a") as fh:  # for the reader; a torn last line is harmless
                fh.write("".join(json.dumps(r) + "\n" for r in rows))
            written.append(path)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return written


class TeacherGroups(IterableDataset):
    """Training batches from a folder of teacher groups (module docstring).

    Batch ``j`` (deterministic for ``seed``, epoch and ``j``): one group drawn at random; each of its stacks cropped
    at its own random place to ``crop`` x ``crop`` pixels and flipped at random. Keys as the synthetic batches
    (``images`` ``(B, S, 3, crop, crop)`` in [0, 1], ``focus_m``, ``lens``, ``k``) plus ``teacher_depth``
    ``(B, 1, crop, crop)`` metres. The folder is listed again every ``relist_every`` batches, so training may start
    while groups are still being made.
    """

    def __init__(self, folder: str | os.PathLike[str], crop: int, seed: int = 0, relist_every: int = 200) -> None:
        super().__init__()
        self.folder = Path(folder)
        self.crop = int(crop)
        self.seed = int(seed)
        self.epoch = 0
        self.relist_every = int(relist_every)
        files = teacher_group_files(self.folder)
        if not files:
            raise ValueError(f"{self.folder}: no teacher groups (group_NNNNNN.npz); make them first: "
                             f"python -m model.distill make --out {self.folder}")
        with np.load(files[0]) as z:
            size = min(z["images"].shape[-2:])
        if self.crop > size:
            raise ValueError(f"crop {self.crop} is larger than the teacher groups' {size} px stacks in {self.folder}")

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch (part of every seed)."""
        self.epoch = int(epoch)

    def make(self, index: int, files: Sequence[Path] | None = None) -> dict[str, torch.Tensor]:
        """Batch number ``index``."""
        files = list(files) if files is not None else teacher_group_files(self.folder)
        rng = np.random.default_rng([self.seed & 0xFFFFFFFFFFFF, self.epoch, int(index)])
        with np.load(files[int(rng.integers(len(files)))]) as z:
            images, focus, lens, k, teacher = z["images"], z["focus_m"], z["lens"], z["k"], z["teacher_depth"]
        b, _, _, h, w = images.shape
        c = self.crop
        crops, depths = [], []
        for i in range(b):
            y, x = int(rng.integers(h - c + 1)), int(rng.integers(w - c + 1))
            im, d = images[i, ..., y:y + c, x:x + c], teacher[i, y:y + c, x:x + c]
            if rng.random() < 0.5:
                im, d = im[..., ::-1], d[..., ::-1]
            if rng.random() < 0.5:
                im, d = im[..., ::-1, :], d[..., ::-1, :]
            crops.append(np.ascontiguousarray(im))
            depths.append(np.ascontiguousarray(d))
        return {
            "images": torch.from_numpy(np.stack(crops)).float() / 255.0,
            "focus_m": torch.from_numpy(focus.astype(np.float32)),
            "lens": torch.from_numpy(np.repeat(lens[None].astype(np.float64), b, axis=0)),
            "k": torch.full((b,), float(k), dtype=torch.float32),
            "teacher_depth": torch.from_numpy(np.stack(depths)[:, None].astype(np.float32)),
        }

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        from model.data import _index_stream

        files: list[Path] = []
        for n, j in enumerate(_index_stream(None)):  # this loader worker's share of the batch numbers
            if n % self.relist_every == 0:
                files = teacher_group_files(self.folder) or files
            yield self.make(j, files)



def parse_groups(text: str) -> range:
    """``"A:B"`` -> groups A..B-1; ``"N"`` -> 0..N-1. Raises ``ValueError`` otherwise."""
    try:
        a, b = (text.split(":", 1) if ":" in text else ("0", text))
        r = range(int(a), int(b))
    except ValueError:
        raise ValueError(f"--groups must be N or A:B (whole numbers), got {text!r}") from None
    if r.start < 0 or len(r) == 0:
        raise ValueError(f"--groups {text!r} selects no groups (need 0 <= A < B)")
    return r


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m model.distill", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make", help="label synthetic training stacks with the teacher (resumable)")
    m.add_argument("--out", type=Path, default=None,
                   help="folder of teacher groups (made; rerun to continue); default: the config's data_dir")
    m.add_argument("--config", type=Path, default=Path("model/configs/distill.yaml"),
                   help="training config whose generator makes the stacks; a distill config's own generator settings "
                        "(data: synthetic in its place) and data_dir (default: model/configs/distill.yaml)")
    m.add_argument("--groups", default="500", help="N (groups 0..N-1) or A:B (default 500)")
    m.add_argument("--size", type=int, default=128, help="stack size in pixels (default 128)")
    m.add_argument("--teacher", type=Path, default=None, help="teacher checkpoint (default: the shipped model)")
    m.add_argument("--shard", default=None, metavar="I/N", help="make groups I, I+N, ... only (N processes side by side)")
    m.add_argument("--threads", type=int, default=1, help="CPU threads (default 1; run one process per core)")
    m.add_argument("--no-progress", action="store_true", help="no progress bar")
    m.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides (e.g. batch_size=4)")
    args = p.parse_args(argv)
    from model.cli import UsageError, setup_logging
    from model.config import load_config
    from model.eval_suite import parse_shard
    from model.train_config import TrainConfig

    setup_logging()
    try:
        groups = parse_groups(args.groups)
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        if not args.config.is_file():
            raise ValueError(f"--config {args.config}: no such file")
        if args.teacher is not None and not args.teacher.is_file():
            raise ValueError(f"--teacher {args.teacher}: no such checkpoint")
    except ValueError as e:
        raise UsageError(str(e)) from None
    cfg = load_config(TrainConfig, args.config, args.overrides)
    out = args.out if args.out is not None else (Path(cfg.data_dir) if cfg.data == "distill" and cfg.data_dir else None)
    if out is None:
        raise UsageError(f"--out is needed: {args.config} is not a distill config (data: distill, data_dir: ...)")
    if cfg.data == "distill":  # the training config of the distilled run: its generator makes the stacks
        from dataclasses import replace

        cfg = replace(cfg, data="synthetic", data_dir=None)
    cfg.validate()
    if args.shard is not None:
        i, n = parse_shard(args.shard)
        groups = groups[i::n]  # type: ignore[assignment]
    written = make_teacher_groups(cfg, out, groups, size=args.size, teacher=args.teacher, threads=args.threads,
                                  progress=not args.no_progress)
    print(f"wrote {len(written)} teacher groups to {out} ({len(teacher_group_files(out))} there in all)")
    return 0


if __name__ == "__main__":
    import sys

    from model.cli import run_cli

    run_cli(lambda: main(sys.argv[1:]))
