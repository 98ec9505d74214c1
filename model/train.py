"""Train DAIF-Net fully self-supervised from focal stacks (no depth, no AIF ground truth).

The config is a YAML file (see model/configs/) plus key=value overrides; the resolved config is saved
beside every checkpoint. Runs resume from OUT_DIR/last.pt. Multi-GPU: torchrun --nproc_per_node N -m model.train ...

examples:
  python -m model.train --config model/configs/default.yaml
  python -m model.train --config model/configs/default.yaml steps=200 out_dir=runs/try batch_size=4
  # teach it your camera: fine-tune the shipped model on your own recorded, unlabelled stacks
  python -m model.train --finetune recordings/ out_dir=runs/mycam
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m model.train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, default=None, help="YAML config (default: built-in defaults)")
    p.add_argument("--finetune", type=Path, default=None, metavar="DIR",
                   help="fine-tune on the focal-stack/1 folders under DIR, starting from --init (default: the shipped model)")
    p.add_argument("--init", type=Path, default=None, help="start from this checkpoint's weights")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. steps=1000 loss.recon=100")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from model.cli import setup_logging
    from model.config import load_config
    from model.train_config import TrainConfig

    setup_logging()
    overrides = list(args.overrides)
    if args.finetune is not None:
        from model.checkpoint import default_checkpoint_path, load_checkpoint

        init = args.init or default_checkpoint_path()
        src = load_checkpoint(init)
        overrides = [f"data=folder", f"data_dir={args.finetune}", f"init={init}",
                     f"focus_m={src.focus_m}", "lr=1e-4", "steps=2000", "warmup_steps=50"] + overrides
        tmp_lens = None
        if not any(o.startswith("lens=") for o in overrides):
            from model.atomic import atomic_write_json

            out_dir = next((o.split("=", 1)[1] for o in overrides if o.startswith("out_dir=")), "runs/finetune")
            tmp_lens = Path(out_dir) / "lens.json"
            lens = src.lens
            if src.net.lens_aware:  # one model for every lens: fine-tune with the lens the stacks were taken with
                from model.formats import find_stacks, read_stack

                found = find_stacks(args.finetune)
                if found:
                    lens = read_stack(found[0]).lens
            atomic_write_json(tmp_lens, lens.to_dict())
            overrides.append(f"lens={tmp_lens}")
    elif args.init is not None:
        overrides.append(f"init={args.init}")
    cfg = load_config(TrainConfig, args.config, overrides)
    from model.trainer import Trainer

    trainer = Trainer(cfg, progress=not args.no_progress)
    metrics = trainer.train()
    if trainer.is_main:
        print(f"done at step {trainer.step}; checkpoints in {cfg.out_dir}")
        if metrics:
            print("validation: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    return 0


if __name__ == "__main__":
    from model.cli import run_cli

    run_cli(lambda: main(sys.argv[1:]))
