#!/usr/bin/env bash
# Builds fedproxy and runs its test suite (everything but the hand-run 'slow' label).
#   scripts/test.sh              normal build in build/, all tests, validation layer on
#   scripts/test.sh --sanitize   ASan+UBSan build in build-asan/, the device-free unit tests
#                                and the Vulkan tests that are cheap enough under ASan
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc 2>/dev/null || echo 2)
if [ "${1:-}" = "--sanitize" ]; then
  dir=build-asan
  cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DFP_WERROR=ON -DFP_SANITIZE=ON >/dev/null
  cmake --build "$dir" -j "$jobs"
  # Mesa's lavapipe and the Vulkan loader keep process-lifetime allocations that
  # LeakSanitizer would report; leaks in our own code are still caught by the
  # device-free unit tests, which run with leak detection on.
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  ASAN_OPTIONS=detect_leaks=1 ctest --test-dir "$dir" -L unit -LE slow --output-on-failure -j "$jobs"
  # (two -L options: a test must carry both labels)
  ASAN_OPTIONS=detect_leaks=0 ctest --test-dir "$dir" -L asan -L vulkan -LE slow --output-on-failure -j 1
else
  dir=build
  cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFP_WERROR=ON >/dev/null
  cmake --build "$dir" -j "$jobs"
  ctest --test-dir "$dir" -LE slow --output-on-failure -j "$jobs"
fi
