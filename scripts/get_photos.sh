#!/usr/bin/env bash
# Fetch extra training photographs: the sample images of Debian's `opencv-doc` package, into
# data/photos/opencv-doc/ (git-ignored: data/ is in .gitignore; they never go into the repository).
# Use them with `photo_dir=data/photos` (model.train_config.TrainConfig / model.data.SynthConfig):
# model.synth.textures draws training textures from them beside scikit-image's photographs (never for the
# held-out split; an image that copies a held-out photograph is skipped there).
#
# Licence: Debian's copyright file for opencv-doc (copied beside the images as COPYRIGHT.debian) covers the
# sample images with its catch-all stanza `Files: *` -- "License: Apache-2.0 AND BSD-3-Clause", copyright
# Intel, Willow Garage, NVIDIA, AMD, OpenCV Foundation, Itseez, Xperience AI and the OpenCV contributors.
# The package is in Debian main (DFSG-free); Debian removed the non-free `lena` images from the source
# (its Files-Excluded list). Both licences allow using and redistributing the images with the notice kept;
# this script keeps that notice next to them. Some pictures show third-party works or people
# (e.g. starry_night.jpg, messi5.jpg): fine for training textures, do not republish them as your own.
#
# Usage: bash scripts/get_photos.sh [DEST]     (DEST default: data/photos; FORCE=1 fetches again)
# Needs apt-get and dpkg (Debian/Ubuntu); downloads one .deb of about 96 MB, keeps about 15 MB of images.
set -euo pipefail
cd "$(dirname "$0")/.."
dest="${1:-data/photos}"
out="$dest/opencv-doc"
py=".venv/bin/python"
[ -x "$py" ] || py="python3"

if [ -z "${FORCE:-}" ] && [ -f "$out/COPYRIGHT.debian" ] && ls "$out"/*.jpg >/dev/null 2>&1; then
  echo "$out: already there ($(ls "$out" | grep -ciE '\.(jpe?g|png)$') images); FORCE=1 to fetch again"
  exit 0
fi
command -v apt-get >/dev/null 2>&1 && command -v dpkg >/dev/null 2>&1 || {
  echo "error: needs apt-get and dpkg (Debian or Ubuntu) to download opencv-doc" >&2; exit 1; }

mkdir -p "$dest"
work=$(mktemp -d "$dest/.opencv-doc-pkg.XXXXXX")
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download opencv-doc) || {
  echo "error: 'apt-get download opencv-doc' failed (no network, or no apt lists: run apt-get update)" >&2; exit 1; }
deb=$(ls "$work"/opencv-doc_*.deb)
echo "extracting $(basename "$deb")"
dpkg -x "$deb" "$work/root"
doc="$work/root/usr/share/doc/opencv-doc"
[ -d "$doc/examples" ] || { echo "error: $(basename "$deb") has no usr/share/doc/opencv-doc/examples" >&2; exit 1; }

rm -rf "$out"
mkdir -p "$out"
cp "$doc/copyright" "$out/COPYRIGHT.debian"
# Photographs only: at least 200 px on the shorter side and 16 KiB; masks, ground truth, logos, glyphs,
# synthetic patterns, the second image of stereo / flow / calibration pairs and the pictures that are
# blurred on purpose (deblurring and super-resolution samples: an all-in-focus texture must be sharp) are left out.
"$py" - "$doc/examples" "$out" <<'EOF'
import re
import shutil
import sys
from pathlib import Path

from PIL import Image

src, out = Path(sys.argv[1]), Path(sys.argv[2])
skip = re.compile(
    r"(mask|gt\.|logo|trimap|output_mattes|_result|shape_sample|digits|gradient|templ|tmpl|notes|chessboard|"
    r"peilin|polygon|scenetext_char|scenetext_word|detect_blob|ela_modified|/right\d*\.|/left(0[2-9]|1\d)\.|"
    r"_defocus|_motion|dnn_superres|aloer|basketball2|rubberwhale2|leuvenb|aero3|graf3|suzanne2|imagetextr|lr_06|pic[1-6]\.png)",
    re.IGNORECASE,
)
kept = 0
for f in sorted(src.rglob("*")):
    rel = f.relative_to(src).as_posix()
    if f.suffix.lower() not in (".jpg", ".jpeg", ".png") or skip.search("/" + rel) or f.stat().st_size < 16384:
        continue
    try:
        with Image.open(f) as im:
            w, h, mode = im.size[0], im.size[1], im.mode
    except Exception:
        continue
    if min(w, h) < 200 or mode in ("1", "P"):
        continue
    shutil.copyfile(f, out / rel.replace("/", "_"))
    kept += 1
print(f"{out}: {kept} photographs")
EOF
echo "done: use photo_dir=$dest"
