"""Train DAIF-Net fully self-supervised from focal stacks (no depth, no AIF ground truth).

The config is a YAML file (see model/configs/) plus key=value overrides; the resolved config is saved
beside every checkpoint. Runs resume from OUT_DIR/last.pt. Multi-GPU: torchrun --nproc_per_node N -m model.train ...

examples:
  python -m model.train --config model/configs/default.yaml
  python -m model.train --config model/configs/default.yaml steps=200 out_dir=runs/try batch_size=4
  # teach it your camera: fine-tune the shipped model on your own recorded, unlabelled stacks
  python -m model.train --finetune recordings/ out_dir=runs/mycam

Fine-tuning (--finetune) runs 2,000 steps unless steps=N says otherwise, and states the expected time
on this machine after timing its first steps. A lens-aware model (the shipped one) is fine-tuned with the
recipe it was trained with (model/configs/relblur.yaml: lr 5e-5, frozen batch-norm statistics, the
relative-blur loss) on every recorded frame at its own focus distance, with the stacks' own lens.
It holds back 1 in 5 of your stacks (--holdout N; at least one of two or more) and validates their
re-rendering loss (no depth needed) at the start and every val_every steps; best.pt is the best of
those, the start weights until a step beats them, and the end says when the result is worse than
where it started.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from model.lens import LensProfile


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m model.train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, default=None, help="YAML config (default: built-in defaults)")
    p.add_argument("--finetune", type=Path, default=None, metavar="DIR",
                   help="fine-tune on the focal-stack/1 folders under DIR, starting from --init (default: the shipped model)")
    p.add_argument("--init", type=Path, default=None, help="start from this checkpoint's weights")
    p.add_argument("--holdout", type=int, default=5, metavar="N",
                   help="with --finetune: hold back 1 in N stacks (at least one of two or more) to validate on and "
                        "choose best.pt by (default 5; 0: train on all, no validation)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. steps=1000 loss.recon=100")
    return p


#: the most frames a lens-aware fine-tune feeds the network (the shipped model was trained on 3-7)
MAX_FINETUNE_FRAMES = 7

#: the training recipe a lens-aware fine-tune continues with: that of the shipped model's self-supervised training
#: (its learning rate, frozen batch-norm statistics and relative-blur loss weight); the rest of the config is the
#: built-in defaults plus the fine-tune's own settings
LENS_AWARE_RECIPE = Path(__file__).resolve().parent / "configs" / "relblur.yaml"


def _lens_aware_recipe() -> list[str]:
    """Overrides that give a lens-aware fine-tune the shipped model's recipe (:data:`LENS_AWARE_RECIPE`)."""
    from model.config import load_config
    from model.train_config import TrainConfig

    cfg = load_config(TrainConfig, LENS_AWARE_RECIPE, [])
    return [f"lr={cfg.lr}", f"freeze_bn={str(cfg.freeze_bn).lower()}", f"loss.relblur={cfg.loss.relblur}"]


def _lens_aware_finetune(data: Path) -> tuple[list[str], "LensProfile | None"]:
    """Overrides for fine-tuning a lens-aware model on the stacks under ``data``: every frame of each stack (up to
    :data:`MAX_FINETUNE_FRAMES`, one per focus bin), and the first stack's focus distances on record, instead of
    the frames nearest the model's reference focus distances (which belong to another lens); and the first stack's
    lens, to train with. ``([], None)`` when ``data`` holds no stacks (the trainer then says so)."""
    from model.formats import find_stacks, read_stack

    found = find_stacks(data)
    if not found:
        return [], None
    stacks = [read_stack(f, load_images=False) for f in found]
    n = max(2, min(MAX_FINETUNE_FRAMES, min(len(st.focus_m) for st in stacks)))
    focus = [float(f) for f in stacks[0].focus_m]
    return [f"focus_m={focus}", "focus_mode=bins", f"stack_size_min={n}", f"stack_size_max={n}"], stacks[0].lens


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from model.cli import UsageError, setup_logging

    if args.holdout < 0 or args.holdout == 1:
        raise UsageError(f"--holdout must be 0 (none) or N >= 2 (1 in N stacks held back), got {args.holdout}")
    from model.config import load_config
    from model.train_config import TrainConfig

    setup_logging()
    overrides = list(args.overrides)
    if args.finetune is not None:
        from model.checkpoint import default_checkpoint_path, load_checkpoint

        init = args.init or default_checkpoint_path()
        src = load_checkpoint(init)
        auto = [f"data=folder", f"data_dir={args.finetune}", f"init={init}",
                f"focus_m={src.focus_m}", "steps=2000", "warmup_steps=50"]
        lens = src.lens
        if src.net.lens_aware:  # one model for every lens: fine-tune with the lens and focus the stacks were taken with
            extra, stack_lens = _lens_aware_finetune(args.finetune)
            auto += _lens_aware_recipe() + extra
            lens = stack_lens or lens
        else:
            auto.append("lr=1e-4")
        overrides = auto + overrides
        if not any(o.startswith("lens=") for o in overrides):
            from model.atomic import atomic_write_json

            out_dir = next((o.split("=", 1)[1] for o in overrides if o.startswith("out_dir=")), "runs/finetune")
            tmp_lens = Path(out_dir) / "lens.json"
            atomic_write_json(tmp_lens, lens.to_dict())
            overrides.append(f"lens={tmp_lens}")
    elif args.init is not None:
        overrides.append(f"init={args.init}")
    cfg = load_config(TrainConfig, args.config, overrides)
    from model.trainer import Trainer

    trainer = Trainer(cfg, progress=not args.no_progress, holdout_every=args.holdout if args.finetune is not None else 0)
    if args.finetune is not None and trainer.is_main:
        default = "" if any(o.startswith("steps=") for o in args.overrides) else " (the default; steps=N changes it)"
        todo = f"{cfg.steps - trainer.step:,} of {cfg.steps:,} steps" if trainer.step else f"{cfg.steps:,} steps"
        print(f"fine-tuning on {args.finetune}: {todo}{default}; the time per step is measured on the first steps "
              "and the expected time stated", flush=True)
    metrics = trainer.train()
    if trainer.is_main:
        print(f"done at step {trainer.step}; checkpoints in {cfg.out_dir}")
        if metrics:
            print("validation: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
        for line in trainer.holdout_report():
            print(line)
    return 0


if __name__ == "__main__":
    from model.cli import run_cli

    run_cli(lambda: main(sys.argv[1:]))
