#!/usr/bin/env bash
# One 4-GPU session of training, ablations and benchmarks, in two calls of under 10 minutes each (the lent GPU
# machine's per-command limit). Run from a checkout with gsplat importable; results go to $OUT, runs to $RUNS.
#
#   phase1: GPUs 0+1  the shipped model, continued from its weights with DistributedDataParallel (torchrun)
#           GPUs 2, 3 the paper's ablations, each from scratch with the same budget, then scored
#   phase2: GPUs 0+1  the shipped model continued (resumed when the run folder survived, else from phase 1's
#                     weights in $INIT), then scored; GPU 2 speed benchmarks; GPU 3 parity with gsplat
#   ablations2 (2 GPUs): the fair ablation run, 1,000 steps for every row, fp16 weights back as tars in $OUT
#   bench (1 GPU): bench_speed.py tables and profiles, the GPU tests, the viewer's frame rate
# $OUT brings back at most 64 MiB: ablations2's six tars do not fit one call; fetch the rest at once after it.
set -u
PHASE=${1:?phase1, phase2, ablations, ablations2, bench or pack}
RUNS=${RUNS:-runs}
INIT=${INIT:-stages/model/weights}
mkdir -p "$RUNS" "$OUT"
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
AV=(python -m avat3r_cli.app)
TRAIN=(train --preset base --batch-size 4 --prior builtin --log-every 100 --ckpt-every 500 --val-every 100000)
MAIN=(--out "$RUNS/main" --steps 7000 --lr 2e-4 --warmup 200 --pool-lifetime 1500 --pool-timesteps 12)
ABL=(--steps 1500 --lr 4e-4 --warmup 300 --pool-lifetime 1000)
nvidia-smi --query-gpu=name,memory.total --format=csv >"$OUT/gpus.csv" 2>&1

score() {  # score GPU CHECKPOINT NAME: whole-image metrics vs baselines, and the expression region
  CUDA_VISIBLE_DEVICES=$1 "${AV[@]}" evaluate --checkpoint "$2" --subjects 8 --out "$RUNS/eval_$3" --quiet \
    >"$RUNS/eval_$3.log" 2>&1
  CUDA_VISIBLE_DEVICES=$1 python benchmarks/eval_expression.py --checkpoint "$2" --json "$RUNS/expr_$3.json" \
    >"$RUNS/expr_$3.md" 2>&1
}

main_train() {  # main_train TIME_LIMIT
  local from=(--init "$INIT")
  { [ -f "$RUNS/main/train_state.safetensors" ] || [ -f "$RUNS/main/train_state.pt" ]; } && from=()
  CUDA_VISIBLE_DEVICES=0,1 torchrun --standalone --nproc_per_node 2 -m avat3r_cli.app "${TRAIN[@]}" "${MAIN[@]}" \
    "${from[@]}" --time-limit "$1" --ship "$OUT/ckpt" >>"$RUNS/main.log" 2>&1
  score 0 "$OUT/ckpt" "main_$PHASE"
}

pack() {
  tar czf "$OUT/runs.tgz" "$RUNS"/*.log "$RUNS"/*.md "$RUNS"/*.json "$RUNS"/eval_* "$RUNS"/*/metrics.jsonl \
    "$RUNS"/*/train_config.json "$RUNS"/*/val 2>/dev/null
}

if [ "$PHASE" = phase1 ]; then
  main_train 440 &
  declare -A ablations=([full]="" [no_pos_prior]="--set use_pos_prior=false" [no_pos_skip]="--set pos_skip=false"
                        [consistent]="--consistent-inputs" [no_rgb_skip]="--set rgb_skip=false")
  declare -A gpu=([full]=2 [no_pos_prior]=2 [no_pos_skip]=2 [consistent]=3 [no_rgb_skip]=3)
  for name in "${!ablations[@]}"; do
    # shellcheck disable=SC2086 # the ablation flags split on purpose
    (CUDA_VISIBLE_DEVICES=${gpu[$name]} "${AV[@]}" "${TRAIN[@]}" "${ABL[@]}" --out "$RUNS/abl_$name" --time-limit 400 \
       ${ablations[$name]} >"$RUNS/abl_$name.log" 2>&1
     score "${gpu[$name]}" "$RUNS/abl_$name/model.safetensors" "abl_$name") &
  done
  wait
elif [ "$PHASE" = ablations ]; then  # a shorter, equal budget on 4 GPUs, scored on the GPU
  declare -A ablations=([full]="" [no_pos_prior]="--set use_pos_prior=false" [no_pos_skip]="--set pos_skip=false"
                        [consistent]="--consistent-inputs" [no_rgb_skip]="--set rgb_skip=false")
  declare -A gpu=([full]=0 [no_pos_prior]=1 [no_pos_skip]=2 [consistent]=3 [no_rgb_skip]=2)
  for name in "${!ablations[@]}"; do
    # shellcheck disable=SC2086 # the ablation flags split on purpose
    (CUDA_VISIBLE_DEVICES=${gpu[$name]} "${AV[@]}" "${TRAIN[@]}" --steps "${ABL_STEPS:-900}" --lr 4e-4 --warmup 200 \
       --pool-lifetime 1000 --out "$RUNS/abl_$name" --time-limit "${ABL_LIMIT:-230}" ${ablations[$name]} \
       >"$RUNS/abl_$name.log" 2>&1
     CUDA_VISIBLE_DEVICES=${gpu[$name]} python benchmarks/eval_expression.py --checkpoint "$RUNS/abl_$name/model.safetensors" \
       --json "$RUNS/expr_abl_$name.json" >"$RUNS/expr_abl_$name.md" 2>&1) &
  done
  wait
elif [ "$PHASE" = ablations2 ]; then  # the fair run: same steps and data for every row, 3 runs per GPU
  # 5 variants plus the full model at a second seed (its spread is the table's noise level); 16 pool slots
  # per run so the pool builds in ~1.5 min on a shared GPU; each run ships fp16 weights as one tar in $OUT
  declare -A ablations=([full]="" [full_seed1]="--seed 1" [no_pos_prior]="--set use_pos_prior=false"
                        [no_pos_skip]="--set pos_skip=false" [consistent]="--consistent-inputs"
                        [no_rgb_skip]="--set rgb_skip=false")
  declare -A gpu=([full]=0 [no_pos_prior]=0 [consistent]=0 [full_seed1]=1 [no_pos_skip]=1 [no_rgb_skip]=1)
  for name in "${!ablations[@]}"; do
    # shellcheck disable=SC2086 # the ablation flags split on purpose
    (CUDA_VISIBLE_DEVICES=${gpu[$name]} "${AV[@]}" "${TRAIN[@]}" --steps "${ABL_STEPS:-1000}" --lr 4e-4 \
       --warmup 150 --pool-slots 16 --pool-lifetime 1000 --out "$RUNS/abl_$name" --time-limit "${ABL_LIMIT:-525}" \
       --ship "$RUNS/ship_$name" ${ablations[$name]} >"$RUNS/abl_$name.log" 2>&1
     tar cf "$OUT/abl_$name.tar" -C "$RUNS" "ship_$name") &
  done
  wait
elif [ "$PHASE" = bench ]; then  # one GPU: issue 8's tables and profiles, the GPU tests, the viewer's frame rate
  python benchmarks/bench_speed.py --compile --json "$RUNS/bench_speed.json" --profile "$RUNS/profile" \
    >"$OUT/bench_speed.md" 2>&1
  python -m pytest -q -m gpu -p no:cacheprovider tests/test_create.py tests/test_render.py \
    tests/test_render_fastpath.py tests/test_priors.py tests/test_view_server.py >"$RUNS/test_gpu.log" 2>&1
  python -m stages.view.bench examples/avatar.safetensors --device cuda >"$RUNS/view_bench.md" 2>&1
  tar czf "$OUT/bench_runs.tgz" -C "$RUNS" bench_speed.json profile test_gpu.log view_bench.md
  exit 0
elif [ "$PHASE" = phase2 ]; then
  main_train "${MAIN_LIMIT:-360}" &
  (CUDA_VISIBLE_DEVICES=2 python benchmarks/bench_speed.py --json "$RUNS/bench_speed.json" >"$RUNS/bench_speed.md" 2>&1
   CUDA_VISIBLE_DEVICES=2 python benchmarks/bench_model.py --device cuda >"$RUNS/bench_model.md" 2>&1
   CUDA_VISIBLE_DEVICES=2 python benchmarks/bench_priors.py --seeds 2 --device cuda --resolution 512 \
     >"$RUNS/bench_priors.md" 2>&1) &
  (CUDA_VISIBLE_DEVICES=3 python benchmarks/gpu_parity.py --out "$RUNS/parity.md" >"$RUNS/parity.log" 2>&1) &
  wait
fi
pack  # also alone (`pack`), after an outer `timeout` cut a phase short
ls -la "$OUT" "$RUNS"
tail -n 3 "$RUNS"/*.log
cat "$RUNS"/*.md 2>/dev/null | head -c 6000
