#!/usr/bin/env bash
# Fuzzes fedproxy's parsers with libFuzzer under ASan+UBSan for a bounded time:
#   scripts/fuzz.sh SECONDS [TARGET...]
# TARGETs (default: all), each run for SECONDS:
#   msg          the message decoder, chunk frames and clients.json (transport)
#   safetensors  .safetensors files (fp_st_open)
#   config       HF config.json and the "dp" section of server.json
#   tokenizer    tokenizer.json (parse, then encode/decode)
# Builds with clang and FP_FUZZ=ON in build-fuzz/. Seeds: for msg, generated
# valid and mutated messages (fuzz_msg_seeds --write); for the others, the
# checked-in tests/fuzz/seeds/<target>/. The corpus grows in
# build-fuzz/fuzz-corpus/<target>; a crash, leak, UB report or slow input
# lands in build-fuzz/fuzz-artifacts/ and makes this script (and CI) fail.
# Replay one with the plain drivers: build/tests/fuzz/test_fuzz_<target> FILE
# (test_fuzz_msg for msg). libFuzzer for Debian's clang 14 comes with
# libclang-rt-14-dev (platforms/linux/install-deps.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:?usage: scripts/fuzz.sh SECONDS [msg|safetensors|config|tokenizer ...]}"
shift
case "$secs" in ''|*[!0-9]*) echo "fuzz.sh: SECONDS must be a whole number" >&2; exit 2 ;; esac
targets=("$@")
[ "${#targets[@]}" -gt 0 ] || targets=(msg safetensors config tokenizer)
for t in "${targets[@]}"; do
  case "$t" in msg|safetensors|config|tokenizer) ;; *) echo "fuzz.sh: unknown target '$t'" >&2; exit 2 ;; esac
done
jobs=2
dir=build-fuzz
cmake -S . -B "$dir" -G Ninja -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DFP_FUZZ=ON >/dev/null
build_targets=()
for t in "${targets[@]}"; do build_targets+=("fuzz_$t"); done
[[ " ${targets[*]} " == *" msg "* ]] && build_targets+=(fuzz_msg_seeds)
cmake --build "$dir" -j "$jobs" --target "${build_targets[@]}"
artifacts="$dir/fuzz-artifacts"
mkdir -p "$artifacts"
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export FP_QUIET=1 # refused inputs are the point; their warnings would drown the fuzzer's output
for t in "${targets[@]}"; do
  corpus="$dir/fuzz-corpus/$t"
  mkdir -p "$corpus"
  if [ "$t" = msg ]; then
    seeds="$dir/fuzz-corpus/msg-seeds"
    [ -d "$seeds" ] || "$dir/tests/fuzz/fuzz_msg_seeds" --write "$seeds" >/dev/null
  else
    seeds="tests/fuzz/seeds/$t"
  fi
  echo "fuzz.sh: $t for $secs s (corpus $corpus, seeds $seeds)"
  # -max_total_time bounds the run; -timeout flags a single input taking > 10 s;
  # -rss_limit_mb bounds memory (no parser needs much); libFuzzer exits non-zero
  # on any finding, which stops this script.
  "$dir/tests/fuzz/fuzz_$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
    -max_len=16384 -print_final_stats=1 -artifact_prefix="$artifacts/$t-" "$corpus" "$seeds"
done
