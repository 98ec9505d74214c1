"""Make a trained checkpoint the shipped default model (model/default/daifnet.pt + lens.json).

The shipped file is slim: no optimiser state, weights stored in float16 (loaded back into float32), so
the 2.5 M-parameter DAIF-Net takes about 5 MB. Before replacing anything it runs the old-precision and the
float16 weights on a synthetic stack and prints the largest depth difference. The model it replaces
(and its lens.json) is kept in a ``backups/`` folder beside it, named by the time of the replacement;
copy it back to undo.

examples:
  python -m model.ship runs/default/last.pt
  python -m model.ship runs/default/best.pt --dest /tmp/daifnet.pt
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def backup_shipped(dest: Path) -> Path | None:
    """Copy ``dest`` (and ``lens.json`` beside it) to ``dest.parent/backups/<stem>-<UTC time>.pt`` (and
    ``...-lens.json``) before it is replaced. Returns the backup, or ``None`` if ``dest`` does not exist."""
    import shutil
    import time

    from model.atomic import atomic_write_with

    if not dest.is_file():
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    folder = dest.parent / "backups"
    backup = folder / f"{dest.stem}-{stamp}{dest.suffix}"
    n = 1
    while backup.exists():
        backup = folder / f"{dest.stem}-{stamp}-{n}{dest.suffix}"
        n += 1
    with open(dest, "rb") as src:
        atomic_write_with(backup, lambda fh: shutil.copyfileobj(src, fh))
    lens = dest.parent / "lens.json"
    if lens.is_file():
        with open(lens, "rb") as src:
            atomic_write_with(backup.with_name(backup.stem + "-lens.json"), lambda fh: shutil.copyfileobj(src, fh))
    return backup


def ship(src: Path, dest: Path | None = None, backup: bool = True) -> tuple[Path, float]:
    """Write ``src`` as a slim float16 checkpoint to ``dest`` (default: the shipped model) and its lens
    profile beside it. Returns ``(dest, max depth difference in metres on a test stack)``.

    With ``backup`` the model it replaces is kept first (:func:`backup_shipped`)."""
    import torch

    from model.checkpoint import default_checkpoint_path, load_checkpoint, read_checkpoint
    from model.atomic import atomic_torch_save

    dest = dest or default_checkpoint_path()
    obj = read_checkpoint(src)
    full = load_checkpoint(src)
    slim = {k: v for k, v in obj.items() if k not in ("optimizer", "scheduler", "_path")}
    slim["state_dict"] = {k: (v.half() if v.is_floating_point() else v) for k, v in obj["state_dict"].items()}
    slim["shipped_from"] = str(src)
    tmp = dest.with_suffix(".check.pt")
    atomic_torch_save(slim, tmp)
    try:
        half = load_checkpoint(tmp)
        g = torch.Generator().manual_seed(0)
        x = torch.rand(1, len(full.focus_m), 3, 96, 128, generator=g)
        f = torch.tensor([full.focus_m])
        with torch.no_grad():
            diff = float((full.net(x, f).depth_m - half.net(x, f).depth_m).abs().max())
        if backup:
            backup_shipped(dest)
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)
    full.lens.save(dest.parent / "lens.json")
    return dest, diff


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m model.ship", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", type=Path, help="trained checkpoint (e.g. runs/default/last.pt)")
    p.add_argument("--dest", type=Path, default=None, help="where to write (default: model/default/daifnet.pt)")
    p.add_argument("--no-backup", action="store_true", help="do not keep the model it replaces (default: kept in backups/ beside it)")
    args = p.parse_args(argv)
    from model.checkpoint import default_checkpoint_path

    dest = args.dest or default_checkpoint_path()
    prev = None if args.no_backup else backup_shipped(dest)
    dest, diff = ship(args.checkpoint, dest, backup=False)
    if prev is not None:
        print(f"kept the model it replaced as {prev} (copy it back to undo)")
    print(f"wrote {dest} ({dest.stat().st_size / 1e6:.1f} MB); float16 weights change depth by at most {diff * 1e3:.2f} mm on a test stack")
    return 0


if __name__ == "__main__":
    from model.cli import run_cli

    run_cli(lambda: main(sys.argv[1:]))
