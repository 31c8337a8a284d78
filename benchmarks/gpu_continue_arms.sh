#!/usr/bin/env bash
# Several equal-budget arms of benchmarks/gpu_continue.sh in one device call (issue 17): one after another, or side
# by side on the one GPU with PARALLEL=1. Side by side does not pay: on an H100 three base-preset arms at batch 4
# ran at 0.56-0.59 s/step each (0.19 s/step for the three together) against 0.17-0.20 s/step for one alone, and
# each paid its start-up in the time limit. Each arm keeps its own schedule (STEPS) and resumes from /tmp/keep in
# the next call where LIMIT stopped it (LIMIT is each arm's own). Common options in FLAGS, an arm's own in
# EXTRA_<ARM>. Each arm's outputs go to their own folder and come back as $OUT/ARM.tar (weights, log, metrics,
# expression scores): a call returns at most 8 files.
#
#   ARMS="C T" INIT=.ckpt/L9 DATA=.c63train STEPS=1800 LIMIT=400 FLAGS="--seed 23 ..." \
#     EXTRA_T="--tracked-codes video:/tmp/keep/data --tracked-codes-share 0.5" bash benchmarks/gpu_continue_arms.sh
# EXPR=1 / CODES=... / AVERAGE=... are passed on to every arm (see gpu_continue.sh).
set -eu
KEEP=/tmp/keep
mkdir -p "$KEEP" "$OUT"
# shared set-up first, so the arms do not race on it
bash benchmarks/device_site.sh
[ -d "$KEEP/data" ] || [ -z "${DATA:-}" ] || cp -r "$DATA" "$KEEP/data"
run_arm() {  # one arm's gpu_continue.sh call, its outputs in its own folder
  local arm=$1 extra=EXTRA_$1
  mkdir -p "$KEEP/out_$arm" && rm -rf "${KEEP:?}/out_$arm"/*
  OUT=$KEEP/out_$arm NAME=$arm FLAGS="${FLAGS:-} ${!extra:-}" bash benchmarks/gpu_continue.sh \
    >"$KEEP/out_$arm/arm.log" 2>&1
}
status=0
if [ -n "${PARALLEL:-}" ]; then
  pids=()
  for arm in ${ARMS:?arm names}; do run_arm "$arm" & pids+=($!); done
  for pid in "${pids[@]}"; do wait "$pid" || status=1; done
else
  for arm in ${ARMS:?arm names}; do run_arm "$arm" || status=1; done
fi
for arm in $ARMS; do
  tar cf "$OUT/$arm.tar" -C "$KEEP/out_$arm" .
  echo "== $arm"; tail -n 4 "$KEEP/out_$arm/arm.log"
done
exit $status
