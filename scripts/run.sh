#!/usr/bin/env bash
# The main job: build, profile this machine's Vulkan device, then run a small
# federation end to end on the embedded defaults: six heterogeneous clients
# (device overlays from AMD to a minimal CPU), secure aggregation (SecAgg+),
# one client dropping mid-round, three rounds over CURVE-encrypted loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc 2>/dev/null || echo 2)
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$jobs"
echo "== fp-probe --quick"
build/tools/fp-probe --quick
echo
echo "== fp sim --config examples/sim-small.json"
build/tools/fp sim --config examples/sim-small.json
