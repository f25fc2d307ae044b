#!/usr/bin/env bash
# Download the wheels the accelerator machine lacks, for benchmarks/device_check.py to install.
#
#   benchmarks/fetch_wheels.sh                       # Python 3.12 wheels into wheels/
#   benchmarks/fetch_wheels.sh --python 3.11 --dest /tmp/w
#   benchmarks/fetch_wheels.sh --jax cuda12          # also the pinned jax, jaxlib and CUDA plugin
#
# What it does, on a machine that reaches the package index (never on the device machine):
#  1. resolves requirements.txt's runtime pins with their dependencies for the device's Python
#     (pip download --only-binary=:all: --python-version X.Y --platform manylinux_2_27_x86_64 ...);
#     a dependency published only as source (promise, which tensorflow-datasets needs) is built
#     into a wheel here first, with pip wheel;
#  2. keeps the wheels of the packages the device image lacks: benchmarks/device_image_packages.txt
#     names those it has (jax, jaxlib and jax-cuda13-plugin 0.11.2 among them); TensorFlow is
#     never fetched (the library reads TFDS without it);
#  3. prints each kept wheel's size and the total against the device tool's 64 MiB limit on what
#     travels (the whole working tree plus the carried folders).
# With --jax cuda12 (or cuda13) it also keeps jax and jaxlib at the pins and downloads
# jax-cudaNN-plugin and jax-cudaNN-pjrt of the same version (what `jax[cudaNN]` resolves to;
# the NVIDIA libraries they need are not fetched). Measured 2026-12-01 for Python 3.12: jaxlib
# 0.10.2 is 81.5 MiB, jax-cuda12-pjrt 166 MiB, jax-cuda13-pjrt 119 MiB: each alone exceeds the
# limit, so on that machine the check runs on the image's own jax and says so.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY_VERSION=3.12
DEST="$ROOT/wheels"
JAX=none
PYTHON="${PYTHON:-python3}"
LIMIT_MIB=64
while [ $# -gt 0 ]; do
  case "$1" in
    --python) PY_VERSION="$2"; shift 2 ;;
    --dest) DEST="$2"; shift 2 ;;
    --jax) JAX="$2"; shift 2 ;;
    -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
    *) echo "fetch_wheels.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$JAX" in none|cuda12|cuda13) ;; *) echo "--jax: none, cuda12 or cuda13, not $JAX" >&2; exit 2 ;; esac

PLATFORM=(--only-binary=:all: --python-version "$PY_VERSION" --implementation cp
  --platform manylinux_2_27_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
norm() { tr 'A-Z_.' 'a-z--' | sed 's/--*/-/g'; }

# The runtime pins (requirements.txt from "# Runtime" on), never TensorFlow.
sed -n '/^# Runtime/,$p' "$ROOT/requirements.txt" | sed 's/#.*//' | grep '==' | grep -vi '^tensorflow==' \
  > "$WORK/runtime.txt"
jax_version="$(grep '^jax==' "$WORK/runtime.txt" | cut -d= -f3)"

# Dependencies published as source only: build their (pure Python) wheels here.
mkdir -p "$WORK/local" "$WORK/all"
"$PYTHON" -m pip wheel -q --no-deps -w "$WORK/local" promise

"$PYTHON" -m pip download -q "${PLATFORM[@]}" --find-links "$WORK/local" -d "$WORK/all" -r "$WORK/runtime.txt"
if [ "$JAX" != none ]; then
  "$PYTHON" -m pip download -q --no-deps "${PLATFORM[@]}" -d "$WORK/all" \
    "jax-$JAX-plugin==$jax_version" "jax-$JAX-pjrt==$jax_version"
fi

# Keep what the image lacks (and, with --jax, the pinned jax stack).
grep -v '^#' "$ROOT/benchmarks/device_image_packages.txt" | norm > "$WORK/have.txt"
if [ "$JAX" != none ]; then
  grep -vx -e jax -e jaxlib "$WORK/have.txt" > "$WORK/have2.txt" && mv "$WORK/have2.txt" "$WORK/have.txt"
fi
mkdir -p "$DEST"
rm -f "$DEST"/*.whl
kept=0
for wheel in "$WORK"/all/*.whl; do
  name="$(basename "$wheel" | cut -d- -f1 | norm)"
  if grep -qx -- "$name" "$WORK/have.txt"; then
    continue
  fi
  if [ "$name" = tensorflow ]; then
    echo "fetch_wheels.sh: TensorFlow was resolved as a dependency; it is not carried" >&2
    continue
  fi
  cp "$wheel" "$DEST/"
  kept=$((kept + 1))
done

echo "kept $kept wheels for Python $PY_VERSION in $DEST (the image has the rest):"
ls -s --block-size=K "$DEST" | sed 1d | sort -n -r
total_kib="$(du -sk "$DEST" | cut -f1)"
echo "total $((total_kib / 1024)) MiB of the ${LIMIT_MIB} MiB that may travel with one device call (tree + carry)"
if [ "$total_kib" -gt $((LIMIT_MIB * 1024 - 8 * 1024)) ]; then
  echo "WARNING: too large to carry with the working tree. Carry only what the device lacks:" >&2
  echo "without --jax the check uses the image's own jax, and its env rows say which version." >&2
  exit 1
fi
echo "next: device run with carry [\"wheels\"]; see docs/performance.md#device-check"
