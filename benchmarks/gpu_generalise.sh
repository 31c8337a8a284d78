#!/usr/bin/env bash
# Generalisation runs on one GPU (issue 17), inside one device call of under 10 minutes. Runs in parallel on the
# same GPU (the base model leaves most of an H100 idle), each continued from $INIT for $LIMIT seconds, shipped as
# fp16 to $OUT/ckpt_NAME, then scored on the GPU: held-out synthetic subjects, the expression benchmark, and
# ../shared/ood when a copy was carried in .evalsets/ood (real cases are scored on the CPU, after prepare).
#
#   RUNS="A:--recipe= B:--recipe=wide" LIMIT=420 INIT=stages/model/weights OUT=... bash benchmarks/gpu_generalise.sh
# Each RUNS item is NAME:FLAGS, flags comma-separated (",," for a literal comma is not supported).
set -u
RUNS_DIR=${RUNS_DIR:-runs}
INIT=${INIT:-stages/model/weights}
LIMIT=${LIMIT:-420}
STEPS=${STEPS:-4000}
mkdir -p "$RUNS_DIR" "$OUT"
AV=(python -m avat3r_cli.app)
TRAIN=(train --preset base --batch-size 4 --prior builtin --log-every 100 --ckpt-every 100000 --val-every 100000
       --lr "${LR:-2e-4}" --warmup 200 --pool-lifetime "${LIFETIME:-400}" --steps "$STEPS")
nvidia-smi --query-gpu=name,memory.total --format=csv >"$OUT/gpus.csv" 2>&1
start=$(date +%s)
for item in $RUNS; do
  name=${item%%:*}
  IFS=',' read -r -a flags <<<"${item#*:}"
  ("${AV[@]}" "${TRAIN[@]}" --out "$RUNS_DIR/$name" --init "$INIT" --time-limit "$LIMIT" "${flags[@]}" \
     --ship "$OUT/ckpt_$name" >"$RUNS_DIR/train_$name.log" 2>&1
   echo "$name trained in $(( $(date +%s) - start )) s" >>"$RUNS_DIR/timing.log") &
done
wait
[ -n "${SKIP_SCORE:-}" ] && RUNS=""  # score on the CPU instead (the GPU call's time goes to training)
for item in $RUNS; do
  name=${item%%:*}
  ("${AV[@]}" evaluate --checkpoint "$OUT/ckpt_$name" --subjects 8 --out "$RUNS_DIR/eval_$name" --quiet \
     >"$RUNS_DIR/eval_$name.log" 2>&1
   python benchmarks/eval_expression.py --checkpoint "$OUT/ckpt_$name" --json "$RUNS_DIR/expr_$name.json" \
     >"$RUNS_DIR/expr_$name.md" 2>&1
   if [ -d .evalsets/ood ]; then
     python benchmarks/score_sets.py --checkpoint "$OUT/ckpt_$name" --sets ood --device cuda \
       --work "$RUNS_DIR/score_$name" >"$RUNS_DIR/ood_$name.log" 2>&1
   fi) &
done
wait
echo "all done in $(( $(date +%s) - start )) s" >>"$RUNS_DIR/timing.log"
tar czf "$OUT/runs.tgz" "$RUNS_DIR"/*.log "$RUNS_DIR"/*.txt "$RUNS_DIR"/*.md "$RUNS_DIR"/*.json "$RUNS_DIR"/*/metrics.jsonl \
  "$RUNS_DIR"/*/train_config.json "$RUNS_DIR"/eval_*/*.md "$RUNS_DIR"/eval_*/*.json 2>/dev/null
cat "$RUNS_DIR"/timing.log; tail -n 2 "$RUNS_DIR"/train_*.log; cat "$RUNS_DIR"/expr_*.md | head -40
grep -h "bench:" "$RUNS_DIR"/ood_*.log; tail -n 4 "$RUNS_DIR"/eval_*.log
