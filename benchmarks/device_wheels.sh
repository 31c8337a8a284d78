#!/usr/bin/env bash
# The wheels a device call installs before running the CLI (issue 17). The lent GPU machine has torch, numpy and
# opencv but not the CLI's other dependencies, and reaches no index: its Python is 3.12, this machine's may not
# be, so the wheels are fetched for 3.12 / manylinux at constraints.txt's versions (typer 0.29 imports pydantic,
# so pydantic and its three dependencies come too) beside the gsplat wheel built for that machine.
#
#   benchmarks/device_wheels.sh              # .whl (with pillow, 19 MB: the scorers read PNGs through it)
#                                            # and .whlt (without it, 12 MB: training calls that carry clips)
# Carry .whl, or .whlt renamed on the device (`rm -rf .whl && mv .whlt .whl && ...`); both are git-ignored.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
GSPLAT=${GSPLAT:-../shared/wheels}
[ -n "$(ls "$GSPLAT"/gsplat-*.whl 2>/dev/null)" ] || { echo "no gsplat wheel in $GSPLAT (set GSPLAT=...)" >&2; exit 2; }
pins=()
for name in typer annotated-doc shellingham rich markdown-it-py mdurl Pygments plyfile safetensors jaxtyping \
            imageio tqdm typing_extensions pillow pydantic pydantic_core annotated-types typing-inspection; do
  pin=$(grep -i -m1 "^${name}==" constraints.txt) || { echo "constraints.txt pins no version of $name" >&2; exit 2; }
  pins+=("$pin")
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux_2_28_x86_64 \
  --platform manylinux2014_x86_64 -d "$tmp" "${pins[@]}"
cp "$GSPLAT"/gsplat-*.whl "$tmp"/
rm -rf .whl .whlt && mkdir .whl .whlt
cp "$tmp"/*.whl .whl/ && cp "$tmp"/*.whl .whlt/ && rm .whlt/pillow-*.whl
echo ".whl: $(du -sh .whl | cut -f1) ($(ls .whl | wc -l) wheels); .whlt: $(du -sh .whlt | cut -f1) (no pillow)"
