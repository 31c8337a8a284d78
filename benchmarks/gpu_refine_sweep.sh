#!/usr/bin/env bash
# `reconstruct --refine` settings scored on the GPU with the official scorers, all in one device call (issue 17).
# The cases are prepared on the CPU first (benchmarks/prep_cases.py: prepare and the inputs' recorded expression
# codes, since the GPU machine has no face landmarker); here the scorers' `prepare` copies that capture and the
# other stages run as they are, so every number is the full chain's. Each setting x set runs as its own
# scorer process, side by side on the one GPU.
#
#   SETTINGS="0 20 40 80 80@1e-2" SETS="ood real dev" CKPT=.ckpt/rel4 bash benchmarks/gpu_refine_sweep.sh
# With EVAL_STEPS="0 80" it also runs, per step count, `evaluate --refine` on 8 held-out synthetic subjects and
# on the clips' test split (CLIPS=a video cache holding it), and benchmarks/eval_expression.py --refine; with
# CLIPS set, the expression benchmark runs again with its targets wearing those test clips' tracked codes
# (expr_codes_rSTEPS.md, eval_expression.py --codes).
# Everything comes back as one $OUT/results.tgz (a device call returns at most 8 files) plus a summary on stdout.
# A setting is STEPS or STEPS@LR (0 steps: no refinement).
# $PREP (default .gpucases) holds SET/case_*/ with capture/, and SET_score.py, the scorer of each set
# (../shared/real/score.py for real and dev, ../shared/ood/score.py for ood).
set -u
bash benchmarks/device_site.sh  # installs .whl once per machine and wheel set (a no-op after that)
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
PREP=$(realpath "${PREP:-.gpucases}")
CKPT=$(realpath "${CKPT:?a checkpoint folder}")
RES=${RES:-/tmp/results}  # RES=/tmp/other for a second sweep side by side
mkdir -p "$RES"
nvidia-smi --query-gpu=name,memory.total --format=csv >"$OUT/gpus.csv" 2>&1
cp benchmarks/prepared_cli.sh "$RES/av.sh"  # the CLI whose prepare copies the capture prepared on the CPU
chmod +x "$RES/av.sh"
if [ -n "${TIME_CAPTURE:-}" ]; then  # the GPU's cost of refinement: reconstruct alone, one after another
  for steps in 0 20 80 0; do
    t0=$(date +%s%N)
    python3 -m avat3r_cli.app reconstruct "$TIME_CAPTURE" --out /tmp/time.safetensors --checkpoint "$CKPT" \
      --device cuda $([ "$steps" != 0 ] && echo --refine "$steps") >/dev/null 2>&1
    echo "reconstruct --refine $steps: $(( ($(date +%s%N) - t0) / 1000000 )) ms (process included)" >>"$OUT/timing.txt"
  done
fi
for setting in ${SETTINGS:-0 20 40 80}; do
  IFS=@ read -r steps lr <<<"$setting"
  for set in ${SETS:-ood real dev}; do
    name="${set}_r${steps}${lr:+_lr$lr}"
    (CASES="$PREP/$set" STEPS=$steps LR=$lr timeout "${LIMIT:-480}" python3 "$PREP/${set}_score.py" --cases "$PREP/$set" \
       --work "$RES/work/$name" --avat3r "$RES/av.sh" --checkpoint "$CKPT" --device cuda >"$RES/$name.txt" 2>&1
     cp "$RES/work/$name/scores.json" "$RES/$name.json" 2>/dev/null) &
  done
done
for steps in ${EVAL_STEPS:-}; do
  refine=(); [ "$steps" != 0 ] && refine=(--refine "$steps")
  EV=(timeout "${LIMIT:-480}" python3 -m avat3r_cli.app evaluate --checkpoint "$CKPT" --device cuda --quiet)
  ("${EV[@]}" --subjects 8 --out "$RES/synth_r$steps" "${refine[@]}" >"$RES/synth_r$steps.log" 2>&1) &
  [ -n "${CLIPS:-}" ] && ("${EV[@]}" --data "video:$CLIPS" --split test --out "$RES/clips_r$steps" "${refine[@]}" \
                            >"$RES/clips_r$steps.log" 2>&1) &
  (timeout "${LIMIT:-480}" python3 benchmarks/eval_expression.py --checkpoint "$CKPT" --seeds 1000-1007 \
     --refine "$steps" --json "$RES/expr_r$steps.json" >"$RES/expr_r$steps.md" 2>&1) &
  [ -n "${CLIPS:-}" ] && (timeout "${LIMIT:-480}" python3 benchmarks/eval_expression.py --checkpoint "$CKPT" \
     --seeds 1000-1007 --refine "$steps" --codes "video:$CLIPS" --codes-split test \
     --json "$RES/expr_codes_r$steps.json" >"$RES/expr_codes_r$steps.md" 2>&1) &
done
wait
cp "$OUT"/timing.txt "$OUT"/gpus.csv "$RES"/ 2>/dev/null
tar czf "$OUT/results.tgz" -C "$RES" --exclude=./work --exclude=./av.sh .
for f in "$RES"/*.txt "$RES"/*.log; do echo "$(basename "$f"): $(tail -n 1 "$f")"; done
