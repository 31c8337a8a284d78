#!/usr/bin/env bash
# Equal-budget arms one after another on one GPU, inside one device call (issue 17). Arms side by side share
# the GPU's throughput, so one at a time gives each the whole GPU. Each arm continues $INIT through
# benchmarks/gpu_generalise.sh; its checkpoint comes back as ONE tar under $OUT (a device call returns at most
# 8 files, and a shipped checkpoint is two shards), or as 12 MiB parts of it where the tar is over 15 MiB,
# beside its logs (runs_NAME.tgz).
#
#   ARMS="C:--seed=11 M:--seed=11,--mirror-video=0.5" STEPS=900 LIMIT=220 INIT=.ckpt/r4x12-soup \
#     bash benchmarks/gpu_arms.sh
# Each ARMS item is NAME:FLAGS (comma-separated), added to $MIX, the flags every arm shares. With BENCH_SETS
# (space-separated model options) the call first times the base preset's driving path with and without them
# (benchmarks/bench_model.py on the GPU, the example capture reconstructed with $INIT) into bench_model.md.
# EXPR=1 runs benchmarks/eval_expression.py on each arm right after it (expr_NAME.md / .json); KEEP=1 leaves a
# copy of each arm's checkpoint in .ckpt/NAME, which a later call on the same warm machine can score.
set -u
bash benchmarks/device_site.sh  # installs .whl once per machine and wheel set (a no-op after that)
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
MIX=${MIX:---data=video:.cache_real63@0.4,--data=synth,--recipe=wide,--recipe-share=0.8,--pool-slots=16,--narrow-video-inputs=0.5}
if [ -n "${BENCH_SETS:-}" ]; then  # e.g. BENCH_SETS="decoder_self_layers=1": GPU speed of base with and without
  for sets in "" "$BENCH_SETS"; do
    python3 benchmarks/bench_model.py --device cuda --checkpoint "$INIT" --preset base --repeats 30 \
      ${sets:+$(printf -- '--set %s ' $sets)} 2>&1 | tail -8 | tee -a "$OUT/bench_model.md"
  done
fi
for arm in $ARMS; do
  name=${arm%%:*}
  RUNS="$name:$MIX,${arm#*:}" LIMIT=${LIMIT:-230} STEPS=${STEPS:-900} INIT=${INIT:?} LIFETIME=${LIFETIME:-2000} \
    SKIP_SCORE=1 RUNS_DIR="runs_$name" OUT="$OUT" bash benchmarks/gpu_generalise.sh 2>&1 | grep -v "No such file"
  mv "$OUT/runs.tgz" "$OUT/runs_$name.tgz"
  if [ -n "${EXPR:-}" ]; then  # the expression benchmark at once, without refinement (about a minute)
    python3 benchmarks/eval_expression.py --checkpoint "$OUT/ckpt_$name" --seeds 1000-1007 --device cuda \
      --json "$OUT/expr_$name.json" 2>&1 | tail -3 | tee "$OUT/expr_$name.md"
  fi
  [ -n "${KEEP:-}" ] && mkdir -p .ckpt && rm -rf ".ckpt/$name" && cp -r "$OUT/ckpt_$name" ".ckpt/$name"  # for a later call
  tar cf "$OUT/ckpt_$name.tar" -C "$OUT" "ckpt_$name" && rm -rf "${OUT:?}/ckpt_$name"
  # a file over 16 MiB does not come back (a base checkpoint with decoder_self_layers=1 is 17.5 MB): parts of
  # 12 MiB instead; here, `cat ckpt_NAME.tar.part_* > ckpt_NAME.tar` joins them
  if [ "$(stat -c %s "$OUT/ckpt_$name.tar")" -gt 15728640 ]; then
    split -b 12M "$OUT/ckpt_$name.tar" "$OUT/ckpt_$name.tar.part_" && rm "$OUT/ckpt_$name.tar"
  fi
done
ls -la "$OUT"
