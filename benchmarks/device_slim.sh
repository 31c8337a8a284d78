#!/usr/bin/env bash
# Keep large tracked files that a GPU training call does not need from travelling to the device machine, whose
# working tree (tracked + untracked files + carried paths) is limited to 64 MiB; the files stay on disk.
#
#   benchmarks/device_slim.sh on    # untrack them in the index and ignore them (.git/info/exclude)
#   ... device call: carry .whl, the shrunk video cache, the init checkpoint ...
#   benchmarks/device_slim.sh off   # track them again (always run this before committing)
#
# `on` leaves the shipped weights and every research checkpoint's large shard (benchmarks/checkpoints/*) behind
# too: name the init checkpoint in the call's carry list (copied to an ignored folder such as .ckpt/) when
# training continues from one of them.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
PATHS=(examples/avatar.safetensors stages/model/weights/model-00001-of-00002.safetensors
       benchmarks/checkpoints/*/model-00001-of-00002.safetensors examples/eval_grid.png
       benchmarks/eval_base/grid.png examples/contact_sheet.png docs/wide_recipe.png docs/view.png
       examples/capture_512)
exclude=.git/info/exclude
case "${1:-}" in
  on)
    git rm -r -q --cached "${PATHS[@]}"
    for p in "${PATHS[@]}"; do grep -qxF "/$p" "$exclude" || echo "/$p" >>"$exclude"; done ;;
  off)
    git reset -q -- "${PATHS[@]}"
    tmp=$(mktemp)
    grep -vxF -f <(printf '/%s\n' "${PATHS[@]}") "$exclude" >"$tmp" || true
    cat "$tmp" >"$exclude" && rm -f "$tmp" ;;
  *) echo "usage: $0 on|off" >&2; exit 2 ;;
esac
echo "tracked bytes now: $(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)"
