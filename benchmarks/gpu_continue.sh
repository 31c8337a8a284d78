#!/usr/bin/env bash
# One training run longer than a device call (issue 17). A call holds at most 10 minutes, so each call resumes
# the run for LIMIT seconds from its state under /tmp/keep, which lasts while the machine stays warm (start the
# next call at once). Every call ships the run's current weights (fp16) to $OUT as one tar with its logs, so a
# lost machine loses at most one call's steps; the run's schedule is the one of STEPS however many calls it takes.
#
#   NAME=L8 INIT=.ckpt/s20/ckpt_W7 DATA=.c63train STEPS=5000 LIMIT=520 \
#     FLAGS="--seed 21 --video-expr-regions --expr-weight 1.5 --expr-contrast 0.3 --expr-contrast-norm l2" \
#     bash benchmarks/gpu_continue.sh        # first call: carry .whl, $DATA and $INIT
#   NAME=L8 STEPS=5000 LIMIT=520 FLAGS="(the same)" bash benchmarks/gpu_continue.sh   # later calls: carry .whl
# DATA is a 63° clip cache, mixed as session 16's recipe (20% clips, 80% synthetic `wide` at share 0.8,
# 16 pool slots, half the clip examples with narrow input sets; CLIP_SHARE=0.4 NARROW=0 give release 4's
# clip share and input sets). AVERAGE=CKPT also writes /tmp/keep/avg_NAME = ½ CKPT + ½ the run's weights
# (fp16) for a scoring call on the same warm machine.
# EXPR=1 scores the run's weights on the expression benchmark (expr_NAME.md) and, with CODES=video:CACHE (a
# cache whose `test` split holds tracked clips, e.g. .gpucases/clips63), on the same subjects wearing those
# clips' tracked codes (expr_codes_NAME.md): about a minute each, and only once the run has reached STEPS.
set -eu
KEEP=/tmp/keep
mkdir -p "$KEEP" "$OUT"
bash benchmarks/device_site.sh
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
NAME=${NAME:?a run name}
RUN=$KEEP/runs/$NAME
if [ ! -d "$RUN" ]; then  # the first call: the start weights and the clips go where later calls find them
  rm -rf "$KEEP/init_$NAME" && cp -r "${INIT:?start weights}" "$KEEP/init_$NAME"
  [ -d "$KEEP/data" ] || cp -r "${DATA:?a clip cache}" "$KEEP/data"
fi
nvidia-smi --query-gpu=name,memory.total --format=csv >"$OUT/gpus.csv" 2>&1 || true
# shellcheck disable=SC2086  # FLAGS is a list of options
python3 -m avat3r_cli.app train --out "$RUN" --init "$KEEP/init_$NAME" --resume --preset base --batch-size 4 \
  --prior builtin --log-every 100 --ckpt-every 100000 --val-every 100000 --lr "${LR:-2e-4}" --warmup 200 \
  --pool-lifetime 2000 --steps "${STEPS:?}" --time-limit "${LIMIT:?}" \
  --data "video:$KEEP/data@${CLIP_SHARE:-0.2}" --data synth --recipe wide --recipe-share 0.8 --pool-slots 16 \
  --narrow-video-inputs "${NARROW:-0.5}" ${FLAGS:-} --ship "$KEEP/ship_$NAME.new" >"$OUT/train_$NAME.log" 2>&1 \
  || { tail -n 20 "$OUT/train_$NAME.log"; exit 1; }
rm -rf "$KEEP/ship_$NAME" && mv "$KEEP/ship_$NAME.new" "$KEEP/ship_$NAME"
if [ -n "${AVERAGE:-}" ]; then
  rm -rf "$KEEP/avg_$NAME"
  python3 -m stages.train.average "$KEEP/avg_$NAME" "$AVERAGE" "$KEEP/ship_$NAME" --weights 1,1 --dtype float16
fi
if [ -n "${EXPR:-}" ] && grep -q "stopped early" "$OUT/train_$NAME.log"; then
  echo "$NAME stopped at its time limit: expression scores wait for the call that finishes it"
elif [ -n "${EXPR:-}" ]; then
  python3 benchmarks/eval_expression.py --checkpoint "$KEEP/ship_$NAME" --seeds 1000-1007 --device cuda \
    --json "$OUT/expr_$NAME.json" 2>&1 | tail -n 1 >"$OUT/expr_$NAME.md"
  if [ -n "${CODES:-}" ]; then
    python3 benchmarks/eval_expression.py --checkpoint "$KEEP/ship_$NAME" --seeds 1000-1007 --device cuda \
      --codes "$CODES" --codes-split test 2>&1 | tail -n 1 >"$OUT/expr_codes_$NAME.md"
  fi
  cat "$OUT"/expr*_"$NAME".md
fi
cp -r "$KEEP/ship_$NAME" "$OUT/ckpt_$NAME"
cp "$RUN/metrics.jsonl" "$RUN/train_config.json" "$OUT/" 2>/dev/null || true
tar cf "$OUT/ckpt_$NAME.tar" -C "$OUT" "ckpt_$NAME" && rm -rf "${OUT:?}/ckpt_$NAME"
tail -n 3 "$OUT/train_$NAME.log"; tail -n 1 "$RUN/metrics.jsonl"
