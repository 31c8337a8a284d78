#!/usr/bin/env bash
# One checkpoint on every held-out set, on this machine's CPU (issue 17): the expression benchmark, the dev, real
# and ood cases through their official scorers, 8 held-out synthetic subjects and, with CLIPS=a video cache, the
# clips' test split. The cases are those benchmarks/prep_cases.py prepared (as for benchmarks/gpu_refine_sweep.sh);
# the scorers' `prepare` copies that capture and the other stages run as they are. Without refinement (STEPS=0,
# the default) a checkpoint takes about 7 minutes on 2 cores; STEPS=80 (the shipped default) takes hours there
# (real 32 min, ood 29, dev 25, clips 62, synthetic about 2 h), so SETS picks which run and in what order.
#
#   benchmarks/cpu_score.sh CHECKPOINT WORKDIR        # PREP=.gpucases STEPS=0 SETS="expr dev real ood synth"
#   STEPS=80 SETS="real ood clips" CLIPS=.gpucases/clips63 benchmarks/cpu_score.sh CHECKPOINT WORKDIR
set -u
SETS=${SETS:-expr dev real ood synth}
for set in $SETS; do  # refuse a misspelt set before hours of the others run
  case $set in
    expr|dev|real|ood|synth) ;;
    clips) [ -n "${CLIPS:-}" ] || { echo "SETS has clips: CLIPS must name a video cache with a test split" >&2; exit 2; } ;;
    *) echo "unknown set '$set' (expr, dev, real, ood, synth, clips)" >&2; exit 2 ;;
  esac
done
CKPT=$(realpath "${1:?a checkpoint}"); WORK=${2:?a work folder}; PREP=$(realpath "${PREP:-.gpucases}")
mkdir -p "$WORK"; WORK=$(realpath "$WORK")
AV=$(command -v avat3r || echo "$PWD/.venv/bin/avat3r")
PY=$(dirname "$AV")/python; [ -x "$PY" ] || PY=python3  # the interpreter of that CLI's environment (needs PIL)
CLI=$(realpath benchmarks/prepared_cli.sh)  # prepare copies the prepared capture; reconstruct refines $STEPS
STEPS=${STEPS:-0}
refine=(); [ "$STEPS" != 0 ] && refine=(--refine "$STEPS")
for set in $SETS; do
  echo "$set: started $(date -u +%T)" >>"$WORK/progress.txt"
  case $set in
    expr) "$PY" benchmarks/eval_expression.py --checkpoint "$CKPT" --seeds 1000-1007 --device cpu \
            --refine "$STEPS" --json "$WORK/expr.json" >"$WORK/expr.log" 2>&1 ;;
    dev|real|ood) CASES="$PREP/$set" STEPS=$STEPS AVAT3R=$AV "$PY" "$PREP/${set}_score.py" --cases "$PREP/$set" \
            --work "$WORK/$set" --avat3r "$CLI" --checkpoint "$CKPT" >"$WORK/$set.log" 2>&1 ;;
    synth) "$AV" evaluate --checkpoint "$CKPT" --subjects 8 --device cpu --out "$WORK/synth" --quiet \
            "${refine[@]}" >"$WORK/synth.log" 2>&1 ;;
    clips) "$AV" evaluate --checkpoint "$CKPT" --data "video:$CLIPS" \
            --split test --device cpu --out "$WORK/clips" --quiet "${refine[@]}" >"$WORK/clips.log" 2>&1 ;;
  esac
  echo "$set: $(tail -n 1 "$WORK/$set.log")" | tee -a "$WORK/progress.txt"
done
