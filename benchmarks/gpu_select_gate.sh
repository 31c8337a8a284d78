#!/usr/bin/env bash
# Pick one of several trained arms by a rule fixed in advance, then gate it, in one device call (issue 17).
# Each arm's weights are /tmp/keep/ship_ARM (left by benchmarks/gpu_continue.sh on the same warm machine). Every
# arm is scored on the dev cases without refinement (the selection set, side by side); the arm with the highest
# dev whole-crop PSNR is then swept at refine 0 and 80 on every set (benchmarks/gpu_refine_sweep.sh, with the
# synthetic, clip and expression evaluations), so the choice never sees a gate figure.
#
#   ARMS="D D4" CLIPS=.gpucases/clips63 bash benchmarks/gpu_select_gate.sh    # carry .whl and .gpucases
# Returns $OUT/dev_ARM/results.tgz per arm, $OUT/results.tgz for the gate, and $OUT/chosen.txt. GATE_STEPS=80
# gates at 80 steps alone, where the CPU gives the figures without refinement (benchmarks/cpu_score.sh).
set -u
bash benchmarks/device_site.sh
for arm in ${ARMS:?arms under /tmp/keep/ship_ARM}; do
  mkdir -p "$OUT/dev_$arm"
  (OUT=$OUT/dev_$arm RES=/tmp/dev_$arm CKPT=/tmp/keep/ship_$arm SETTINGS=0 SETS=dev \
     bash benchmarks/gpu_refine_sweep.sh >/dev/null 2>&1) &
done
wait
best="" best_psnr=-1
for arm in $ARMS; do
  psnr=$(sed -n 's/^real-bench: .* ok=[0-9]* psnr=\([0-9.]*\) .*/\1/p' "/tmp/dev_$arm/dev_r0.txt")
  echo "$arm dev r0: $(tail -n 1 "/tmp/dev_$arm/dev_r0.txt")" | tee -a "$OUT/chosen.txt"
  if [ -n "$psnr" ] && python3 -c "import sys; sys.exit(not float('$psnr') > float('$best_psnr'))"; then
    best=$arm best_psnr=$psnr
  fi
done
[ -n "$best" ] || { echo "no arm scored on the dev cases" | tee -a "$OUT/chosen.txt"; exit 1; }
echo "chosen: $best (dev whole $best_psnr)" | tee -a "$OUT/chosen.txt"
RES=/tmp/gate_$best CKPT=/tmp/keep/ship_$best SETTINGS="${GATE_STEPS:-0 80}" SETS="ood real dev" \
  EVAL_STEPS="${GATE_STEPS:-0 80}" \
  bash benchmarks/gpu_refine_sweep.sh
