#!/usr/bin/env bash
# Rebuild, on a fresh machine, the two 256² caches of the shared real clips that issue 17's runs and scores use
# (about 5 minutes on 2 cores; the 512² tracking caches go to a temporary folder and are removed):
#   $SOLVED (.cache_clips256): cameras solved with one focal per clip, JPEG q95. The clips' test split scored
#     "in the solved geometry" (`evaluate --data video:$SOLVED`) and the dev cases (make_dev_cases.py) read it.
#   $C63 (.cache_real63): the same clips tracked at a fixed 63° vertical FOV (the real cases' convention), JPEG
#     q85 (small enough to travel to the GPU), with MediaPipe landmarks (train --video-expr-regions reads them)
#     and $SOLVED's train/val/test split in split.json, so both caches hold out the same clips. Training reads it.
# Session 14 rebuilt both this way and reproduced release 4's earlier figures on them exactly.
#
# Then the carry-sized parts of $C63 (stages.datasets.video_track.split_cache): $TRAIN (.c63train, its 32 train
# clips, 24 MiB with their frame-coverage maps: what a GPU training call carries) and $TEST (.gpucases/clips63,
# its 4 test clips, 3 MB: what gpu_refine_sweep.sh's CLIPS and eval_expression.py --codes read). All four are
# git-ignored.
#
#   benchmarks/make_clip_caches.sh            # CLIPS=../shared/real/clips SOLVED=.cache_clips256 C63=.cache_real63
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
CLIPS=${CLIPS:-../shared/real/clips}
SOLVED=${SOLVED:-.cache_clips256}
C63=${C63:-.cache_real63}
TRAIN=${TRAIN:-.c63train}
TEST=${TEST:-.gpucases/clips63}
PY=${PY:-.venv/bin/python}
[ -d "$CLIPS" ] || { echo "no clips folder $CLIPS (set CLIPS=...)" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PY" -m stages.datasets.video_track "$CLIPS" --cache "$tmp/solved" --workers 2 --shrink-to "$SOLVED" --shrink-res 256
"$PY" -m stages.datasets.video_track "$CLIPS" --cache "$tmp/c63" --workers 2 --fov 63 \
  --shrink-to "$C63" --shrink-res 256 --shrink-quality 85
"$PY" -m stages.datasets.face_landmarks "$C63"
"$PY" - "$SOLVED" "$C63" <<'PYEOF'
import json
import sys

from stages.datasets import open_dataset

solved, c63 = sys.argv[1:3]
splits = open_dataset(f"video:{solved}", 256).splits()
missing = sorted(set(sum(splits.values(), [])) - set(open_dataset(f"video:{c63}", 256).all_subjects()))
if missing:
    sys.exit(f"{c63}: clips of {solved}'s split were not usable at 63°: {missing}")
with open(f"{c63}/split.json", "w") as f:
    json.dump(splits, f, indent=1)
print(f"{c63}/split.json: " + ", ".join(f"{k} {len(v)}" for k, v in splits.items()))
PYEOF
rm -rf "$TRAIN" "$TEST" && mkdir -p "$(dirname "$TEST")"
for part in "train:$TRAIN" "test:$TEST"; do
  "$PY" -c 'import sys; from stages.datasets.video_track import split_cache
print(f"{sys.argv[2]}: {len(split_cache(sys.argv[1], sys.argv[2], sys.argv[3]))} {sys.argv[3]} clips")' \
    "$C63" "${part#*:}" "${part%%:*}"
done
