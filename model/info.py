"""Show what a checkpoint was trained for: its lens profile (lens/1) and focus distances.

examples:
  python -m model.info                      # the shipped default model
  python -m model.info --checkpoint runs/x/best.pt --json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def checkpoint_info(path: Path | None) -> dict:
    """Plain-data description of a checkpoint: lens profile, focus distances, range, step, config."""
    from model.checkpoint import read_checkpoint
    from model.lens import LensProfile

    obj = read_checkpoint(path)
    lens = LensProfile.from_dict(obj["lens"], source=f"{obj['_path']} [lens]")
    return {
        "checkpoint": str(obj["_path"]),
        "lens": lens.to_dict(),
        "focus_distances_m": sorted(float(f) for f in obj["focus_m"]),
        "working_range_m": [obj["net_config"]["near_m"], obj["net_config"]["far_m"]],
        "network": obj["net_config"],
        "step": int(obj.get("step", 0)),
        "metrics": obj.get("metrics") or {},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m model.info", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, default=None, help="checkpoint (default: the shipped model)")
    p.add_argument("--json", action="store_true", help="print JSON")
    args = p.parse_args(argv)
    info = checkpoint_info(args.checkpoint)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    lens = info["lens"]
    print(f"checkpoint   {info['checkpoint']} (step {info['step']})")
    print(f"lens         {lens.get('name')}: f {lens['focal_length_m'] * 1e3:g} mm, f/{lens['f_number']:g}, "
          f"pixel {lens['pixel_pitch_m'] * 1e6:g} um at {lens.get('image_size')}")
    print(f"focus        {', '.join(f'{f:g}' for f in info['focus_distances_m'])} m")
    print(f"depth range  {info['working_range_m'][0]:g} - {info['working_range_m'][1]:g} m")
    net = info["network"]
    print(f"network      DAIF-Net width {net['width']}, depth {net['depth']}")
    return 0


if __name__ == "__main__":
    from model.cli import run_cli

    run_cli(lambda: main(sys.argv[1:]))
