#!/usr/bin/env bash
# Fuzzes the message decoder (and the chunk-frame and clients.json parsers) with
# libFuzzer for a bounded time:  scripts/fuzz.sh SECONDS
# Builds with clang and FP_FUZZ=ON in build-fuzz/, seeds the corpus from the
# generated valid and mutated messages, then runs fuzz_msg for SECONDS.
# The corpus grows in build-fuzz/fuzz-corpus/msg; crashes land in
# build-fuzz/fuzz-artifacts/ and replay with build-fuzz/tests/fuzz/fuzz_msg_seeds FILE.
# libFuzzer for clang 14 on Debian comes with libclang-rt-14-dev
# (platforms/linux/install-deps.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:?usage: scripts/fuzz.sh SECONDS}"
case "$secs" in ''|*[!0-9]*) echo "fuzz.sh: SECONDS must be a whole number" >&2; exit 2 ;; esac
jobs=2
dir=build-fuzz
cmake -S . -B "$dir" -G Ninja -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DFP_FUZZ=ON >/dev/null
cmake --build "$dir" -j "$jobs" --target fuzz_msg fuzz_msg_seeds
corpus="$dir/fuzz-corpus/msg"
artifacts="$dir/fuzz-artifacts"
mkdir -p "$corpus" "$artifacts"
seeds="$dir/fuzz-corpus/seeds"
if [ ! -d "$seeds" ]; then
  "$dir/tests/fuzz/fuzz_msg_seeds" --write "$seeds"
fi
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# -max_total_time bounds the run; -timeout flags a single input taking > 10 s;
# -rss_limit_mb bounds memory (the decoder never needs much).
"$dir/tests/fuzz/fuzz_msg" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
  -max_len=8192 -print_final_stats=1 -artifact_prefix="$artifacts/" "$corpus" "$seeds"
