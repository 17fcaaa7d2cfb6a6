#!/usr/bin/env bash
# The main job: build, profile this machine's Vulkan device, then run FedProxy
# end to end at the tiny size and print the evaluation table: domain corpora
# from Debian text packages (Dirichlet shards per client), a small base LLM
# pretrained on the server's public text (cached under ~/.cache/fedproxy),
# compression into signed proxies, federated LoRA with secure aggregation over
# CURVE-encrypted loopback, fusion back into the LLM, and every baseline row of
# issue 6 (zero-shot, proxy alone, Offsite-Tuning, FedAvg-LoRA on a uniform
# proxy, FedProxy, centralized and local-only LoRA). About 25-30 minutes on a
# 2-core lavapipe the first time (pretraining the tiny base), ~20 after.
# `scripts/run.sh --demo` runs only the protocol demo instead: six
# heterogeneous stand-in clients, one dropping mid-round (a few seconds).
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc 2>/dev/null || echo 2)
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$jobs"
echo "== fp-probe --quick"
build/tools/fp-probe --quick
echo
if [ "${1:-}" = "--demo" ]; then
  echo "== fp sim --config examples/sim-small.json"
  exec build/tools/fp sim --config examples/sim-small.json
fi
echo "== scripts/experiment.py --size tiny --out out/experiment-tiny"
exec python3 scripts/experiment.py --size tiny --out out/experiment-tiny
