#!/usr/bin/env bash
# Alternates rectifier-engine and ONNX Runtime (bench/peer/ort_bench.js) on one
# model, same batch and threads, and prints each run's median latency.
#   tools/engine/bench_vs_ort.sh MODEL.onnx BATCH THREADS [ROUNDS] [C,H,W]
set -euo pipefail
model=$1 batch=$2 threads=$3 rounds=${4:-3} shape=${5:-3,224,224}
engine=${ENGINE:-build-engine/tools/engine/rectifier-engine}
for r in $(seq "$rounds"); do
  e=$("$engine" "$model" -b "$batch" -t "$threads" -n 20 -w 3 | tail -1 | sed -E 's/.*p50 ([0-9.]+) ms.*/\1/')
  o=$(node bench/peer/ort_bench.js "$model" --batch "$batch" --threads "$threads" --iters 20 \
        --shape "$shape" | sed -E 's/.*"median_ms":([0-9.]+).*/\1/')
  echo "round $r: rectifier ${e} ms, onnxruntime ${o} ms (batch $batch, threads $threads)"
done
