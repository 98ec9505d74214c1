#!/usr/bin/env bash
# One piece of GPU training on a lent GPU machine, made to fit the device tool's 10-minute command limit.
#
#   bash scripts/gpu_session.sh [TRAIN_SECONDS]        # from the repository root, on the GPU machine
#
# 1. prints the Python, PyTorch and GPU it found;
# 2. renders the evaluation suite's tuning split into data/suite_tune3 unless it is there (deterministic; best.pt
#    is chosen on it, never on the test split);
# 3. on the first piece only (no runs/gpu_relblur/last.pt yet): benchmarks/bench_train_data.py --lens-aware, the
#    training-data rate on this GPU against the CPU path;
# 4. trains model/configs/gpu_relblur.yaml for TRAIN_SECONDS (default 420), then SIGTERM: the trainer saves
#    last.pt and stops; the next piece resumes from it;
# 5. copies the run's config, best.pt and last.pt (split into 15 MB parts: the device tool brings back files of at
#    most 16 MiB) and the log into $OUT (default runs/gpu_session_out).
#
# Needs on that machine: python3 with PyTorch (CUDA), numpy, scipy, pyyaml, tqdm, pillow, matplotlib, opencv and
# scikit-image (the lent machines' image has them); no install, no network. The package runs from the checkout
# (PYTHONPATH). Environment: PYTHON (default python3), OUT, GPU_SESSION_OVERRIDES (extra key=value for model.train,
# e.g. "device=cpu steps=3" for a dry run on a machine without a GPU), GPU_SESSION_RUN_DIR (default runs/gpu_relblur),
# GPU_SESSION_SUITE (the tuning folder, default data/suite_tune3), GPU_SESSION_BENCH=0 (skip step 3).
#
# Back on the development machine, put the piece where the next one resumes from (carry runs/gpu_relblur with the
# next call):
#   bash scripts/gpu_session.sh --join FILES_AT [RUN_DIR]
# joins the parts into RUN_DIR/last.pt (default runs/gpu_relblur) only if their SHA-256 matches the one session.log
# recorded (temp file, then rename: a bad transfer leaves the old last.pt), and copies config.yaml, lens.json and
# best.pt beside it (best.pt: the newest piece's; the trainer keeps the best tuning-split AbsRel in last.pt and only
# writes a better one).
set -uo pipefail

if [ "${1:-}" = "--join" ]; then
    from=${2:?"usage: gpu_session.sh --join FILES_AT [RUN_DIR]"}
    dest=${3:-runs/gpu_relblur}
    want=$(grep -o 'last.pt sha256 [0-9a-f]*' "$from/session.log" 2>/dev/null | tail -1 | cut -d' ' -f3)
    parts=("$from"/last.pt.part-*)
    if [ -z "$want" ] || [ ! -f "${parts[0]}" ]; then
        echo "gpu_session.sh --join: $from has no last.pt parts or no checksum in session.log" >&2
        exit 2
    fi
    mkdir -p "$dest" && cat "${parts[@]}" > "$dest/.last.pt.joining" || exit 3
    got=$(sha256sum "$dest/.last.pt.joining" | cut -d' ' -f1)
    if [ "$got" != "$want" ]; then
        rm -f "$dest/.last.pt.joining"
        echo "gpu_session.sh --join: the joined parts in $from do not match the recorded checksum ($got, want $want);" \
             "$dest/last.pt left as it was" >&2
        exit 4
    fi
    mv "$dest/.last.pt.joining" "$dest/last.pt"
    for f in config.yaml lens.json best.pt; do
        [ -f "$from/$f" ] && cp "$from/$f" "$dest/.$f.tmp" && mv "$dest/.$f.tmp" "$dest/$f"
    done
    echo "joined $((${#parts[@]})) parts into $dest/last.pt (sha256 $got)"
    exit 0
fi

secs=${1:-420}
if ! [[ "$secs" =~ ^[0-9]+$ ]] || [ "$secs" -lt 30 ]; then
    echo "gpu_session.sh: TRAIN_SECONDS must be a whole number of seconds >= 30, got '$secs'" >&2
    exit 2
fi
py=${PYTHON:-python3}
out=${OUT:-runs/gpu_session_out}
run_dir=${GPU_SESSION_RUN_DIR:-runs/gpu_relblur}
suite=${GPU_SESSION_SUITE:-data/suite_tune3}
config=model/configs/gpu_relblur.yaml
read -r -a overrides <<< "${GPU_SESSION_OVERRIDES:-}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
mkdir -p "$out"
log="$out/session.log"

{
    echo "== $(date -u +%FT%TZ) gpu_session.sh: $secs s of training"
    "$py" -c "import sys, torch; print('python', sys.version.split()[0], '| torch', torch.__version__, '| cuda', torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else '')" || exit 3
    if [ ! -d "$suite" ]; then
        echo "== rendering the tuning split ($suite)"
        "$py" -m model.eval_suite make --out "$suite" --split tune --per-family 3 || exit 4
    fi
    if [ ! -f "$run_dir/last.pt" ] && [ "${GPU_SESSION_BENCH:-1}" != 0 ]; then
        echo "== training-data rate (first piece only)"
        timeout 150 "$py" benchmarks/bench_train_data.py --lens-aware --repeats 5 \
            || echo "(bench_train_data.py failed or ran over 150 s; training goes on)"
    fi
    echo "== training $config for $secs s ${overrides[*]:+(overrides: ${overrides[*]})}"
    timeout -s TERM -k 90 "$secs" "$py" -m model.train --config "$config" "out_dir=$run_dir" "val_suite=$suite" \
        "${overrides[@]}"
    rc=$?
    case $rc in
        0) echo "== training finished its schedule" ;;
        124) echo "== piece over (SIGTERM after $secs s); last.pt saved, rerun to resume" ;;
        *) echo "== model.train exited with $rc" ;;
    esac
    for f in config.yaml lens.json best.pt; do
        [ -f "$run_dir/$f" ] && cp "$run_dir/$f" "$out/"
    done
    rm -f "$out"/last.pt.part-*  # parts of an earlier piece would join into a corrupt checkpoint
    if [ -f "$run_dir/last.pt" ]; then
        split -b 15M -d -a 2 "$run_dir/last.pt" "$out/last.pt.part-"
        echo "== last.pt: $(stat -c %s "$run_dir/last.pt") bytes in $(ls "$out"/last.pt.part-* | wc -l) parts"
        echo "== last.pt sha256 $(sha256sum "$run_dir/last.pt" | cut -d' ' -f1)"
    fi
    ls -la "$out"
    [ "$rc" -eq 124 ] && rc=0  # a piece ended by its time limit is the normal case
    exit "$rc"
} 2>&1 | tee "$log"
exit "${PIPESTATUS[0]}"
