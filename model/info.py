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
        "lens_aware": obj["net_config"].get("focus_code", "inverse_depth") == "blur",
        "network": obj["net_config"],
        "step": int(obj.get("step", 0)),
        "metrics": obj.get("metrics") or {},
        "config": obj.get("config") or {},
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
    net = info["network"]
    if info["lens_aware"]:
        from model.lens import LensProfile
        from model.optics import blur_per_dioptre_px

        lo, hi = net["x_lo_px"], net["x_hi_px"]
        k = blur_per_dioptre_px(LensProfile.from_dict(lens))
        print(f"lenses       any calibrated lens (lens-aware): each focus distance d_f must give a blur code "
              f"K/d_f of {lo:.3g}-{hi:.3g} px, K = f^2/(4 N p) px per dioptre; depth is predicted for K/d in the same range")
        print(f"             e.g. the lens above (K = {k:.3g} px/dioptre): focus {k / hi:.3g} - {k / lo:.3g} m, "
              f"depth {k / hi:.3g} - {k / lo:.3g} m; a lens with K = 2 px/dioptre: {2 / hi:.3g} - {2 / lo:.3g} m")
        if "k_range" in info["config"]:
            print(f"             trained with K in {info['config']['k_range']} px/dioptre, "
                  f"{info['config'].get('stack_size_min', '?')}-{info['config'].get('stack_size_max', '?')} frames")
        else:
            print("             trained on the lens above only (re-coded on the blur axis): lenses whose focus codes "
                  "K/d_f resemble its focus set's work best")
        print("             outside that range: a clear error naming the fix (focus farther/nearer, downscale, wider aperture)")
    else:
        print(f"depth range  {info['working_range_m'][0]:g} - {info['working_range_m'][1]:g} m (this lens only)")
    print(f"network      DAIF-Net width {net['width']}, depth {net['depth']}")
    return 0


if __name__ == "__main__":
    from model.cli import run_cli

    run_cli(lambda: main(sys.argv[1:]))
