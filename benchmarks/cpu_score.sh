#!/usr/bin/env bash
# One checkpoint on every held-out set, on this machine's CPU (issue 17): the expression benchmark, the dev, real
# and ood cases through their official scorers, and 8 held-out synthetic subjects. The cases are those
# benchmarks/prep_cases.py prepared (as for benchmarks/gpu_refine_sweep.sh); the scorers' `prepare` copies that
# capture and the other stages run as they are. Without refinement (STEPS=0, the default) a checkpoint takes
# about 7 minutes on 2 cores; STEPS=80 (the shipped default) takes hours there.
#
#   benchmarks/cpu_score.sh CHECKPOINT WORKDIR        # PREP=.gpucases STEPS=0 by default
set -u
CKPT=$(realpath "${1:?a checkpoint}"); WORK=${2:?a work folder}; PREP=$(realpath "${PREP:-.gpucases}")
mkdir -p "$WORK"; WORK=$(realpath "$WORK")
AV=$(command -v avat3r || echo "$PWD/.venv/bin/avat3r")
CLI=$(realpath benchmarks/prepared_cli.sh)  # prepare copies the prepared capture; reconstruct refines $STEPS
python benchmarks/eval_expression.py --checkpoint "$CKPT" --seeds 1000-1007 --device cpu --refine "${STEPS:-0}" \
  --json "$WORK/expr.json" >"$WORK/expr.md" 2>&1
for set in dev real ood; do
  CASES="$PREP/$set" STEPS=${STEPS:-0} AVAT3R=$AV python "$PREP/${set}_score.py" --cases "$PREP/$set" \
    --work "$WORK/$set" --avat3r "$CLI" --checkpoint "$CKPT" >"$WORK/$set.log" 2>&1
done
refine=(); [ "${STEPS:-0}" != 0 ] && refine=(--refine "$STEPS")
"$AV" evaluate --checkpoint "$CKPT" --subjects 8 --device cpu --out "$WORK/synth" --quiet "${refine[@]}" \
  >"$WORK/synth.log" 2>&1
tail -n 1 "$WORK/expr.md"; for set in dev real ood; do tail -n 1 "$WORK/$set.log"; done; tail -n 1 "$WORK/synth.log"
