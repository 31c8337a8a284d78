#!/usr/bin/env bash
# The CLI as the official scorers call it, except `prepare`, which copies the capture benchmarks/prep_cases.py
# made of that case (the GPU machine has no face landmarker, and the CPU need not prepare again), and
# `reconstruct`, which refines $STEPS steps (0: none) at step size $LR where given. Shared by
# benchmarks/cpu_score.sh and benchmarks/gpu_refine_sweep.sh, passed to a scorer as --avat3r.
#   CASES=.gpucases/real STEPS=80 [LR=2e-2] [AVAT3R=".venv/bin/avat3r"] benchmarks/prepared_cli.sh COMMAND ...
# AVAT3R is the CLI to run (default: python3 -m avat3r_cli.app, with the repository on PYTHONPATH).
set -u
if [ "$1" = prepare ]; then cp -r "${CASES:?}/$(basename "$(dirname "$4")")/capture" "$4"; exit 0; fi
read -r -a cli <<<"${AVAT3R:-python3 -m avat3r_cli.app}"
if [ "$1" = reconstruct ]; then exec "${cli[@]}" "$@" --refine "${STEPS:-0}" ${LR:+--refine-lr "$LR"}; fi
exec "${cli[@]}" "$@"
