#!/usr/bin/env bash
# Create .venv (if missing) and install the package with everything the tests and the demo use.
# Usage: bash scripts/install.sh [extras]   (default extras: train,export,test)
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-train,export,test}"
py="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$py" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# the CPU build of PyTorch first, so that nothing pulls a multi-GB CUDA build
.venv/bin/python -m pip show torch >/dev/null 2>&1 || .venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[${extras}]"
# TensorRT 10 C++ headers (to compile the GaussPSF plugin); the wheel's own dependencies are not needed
case ",${extras}," in
  *,test,*|*,export,*) .venv/bin/python -m pip install -q --no-deps "kernel-lens==2.0.1" || echo "warning: kernel-lens (TensorRT headers) not installed; plugin tests will skip" >&2 ;;
esac
# onnxruntime C API headers, to compile the native GaussPSF op (export/ort_native.py builds it on first use);
# the onnxruntime wheel ships none. They come from Debian's libonnxruntime-dev (headers only, nothing installed
# system-wide): from this system's apt when it has the package (Debian 13 / Raspberry Pi OS trixie and later),
# else from Debian 13's archive through a private apt state (same mirror as this system's Debian sources).
# Without them onnxruntime runs GaussPSF as a slow Python op and says so.
ort_headers() {
  local dest=.venv/include/onnxruntime d tmp mirror
  for d in "$dest" /usr/include/onnxruntime /usr/local/include/onnxruntime; do
    [ -f "$d/onnxruntime_c_api.h" ] && return 0
  done
  command -v apt-get >/dev/null 2>&1 && command -v dpkg-deb >/dev/null 2>&1 || {
    echo "warning: no apt-get/dpkg-deb: onnxruntime headers not fetched; GaussPSF will run as a Python op in onnxruntime (see docs/export.md)" >&2
    return 0; }
  tmp=$(mktemp -d)
  if ! (cd "$tmp" && apt-get download -q libonnxruntime-dev >/dev/null 2>&1); then
    mirror=$(grep -rhoE '^(URIs:|deb) +[^ ]+' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null \
             | awk '{print $2}' | grep -E '/debian/?$' | head -n 1 || true)
    if [ -n "$mirror" ] && [ -f /usr/share/keyrings/debian-archive-keyring.gpg ]; then
      mkdir -p "$tmp/etc" "$tmp/lists/partial" "$tmp/cache/archives/partial"
      printf 'Types: deb\nURIs: %s\nSuites: trixie\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
        "$mirror" > "$tmp/etc/trixie.sources"
      local apt_opts=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$tmp/etc" -o "Dir::State::Lists=$tmp/lists"
                      -o "Dir::Cache=$tmp/cache" -o Dir::State::status=/dev/null -o APT::Sandbox::User=root)
      (apt-get "${apt_opts[@]}" -q update >/dev/null 2>&1 && cd "$tmp" && apt-get "${apt_opts[@]}" -q download libonnxruntime-dev >/dev/null 2>&1) || true
    fi
  fi
  if ls "$tmp"/libonnxruntime-dev_*.deb >/dev/null 2>&1 && dpkg-deb -x "$tmp"/libonnxruntime-dev_*.deb "$tmp/x" \
     && [ -f "$tmp/x/usr/include/onnxruntime/onnxruntime_c_api.h" ]; then
    mkdir -p .venv/include && rm -rf .venv/include/.onnxruntime.tmp \
      && cp -r "$tmp/x/usr/include/onnxruntime" .venv/include/.onnxruntime.tmp \
      && mv .venv/include/.onnxruntime.tmp "$dest" && echo "onnxruntime headers: $dest"
  else
    echo "warning: could not fetch Debian's libonnxruntime-dev: GaussPSF will run as a Python op in onnxruntime (see docs/export.md)" >&2
  fi
  rm -rf "$tmp"
}
case ",${extras}," in
  *,test,*|*,export,*) ort_headers ;;
esac
echo "installed into $(pwd)/.venv"
