#!/usr/bin/env bash
# Pretrains the benchmark's base LLM on the server's public text and caches it.
#   scripts/pretrain-base.sh [--size tiny|small] [--data DIR] [--fp PATH] [--steps N]
# Prints the model directory (config.json, model.safetensors, tokenizer.json,
# pretrain.json) as the last line of stdout. The cache key is a hash of the
# model config, the recipe, public.txt and the fp version, so a rerun with the
# same inputs is instant; an interrupted run resumes from its last checkpoint.
#
# Sizes (byte-level BPE tokenizer trained on public.txt; Llama, tied embeddings):
#   tiny : 6 layers, hidden 64, 4 heads (2 KV), intermediate 172, vocab 512, seq 64;
#          ~0.2 M parameters; 400 steps of 8 x 64 tokens: a minute or two on lavapipe.
#          For CI and the README's main job.
#   small: 8 layers, hidden 256, 4 heads, intermediate 688, vocab 2048, seq 128;
#          6.85 M parameters; 500 steps of 8 x 128 tokens (0.51 M tokens, about
#          0.6 epochs of public.txt's 0.86 M tokens): ~40 minutes at the 220 tokens/s
#          measured on lavapipe here (2 cores shared with other jobs; 380 tokens/s
#          when idle). The default benchmark's LLM.
# --data DIR: a corpus from scripts/data/build.sh (default: built with its
# defaults into the cache). --steps overrides the size's step count.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
size=small data="" fp="" steps=""
while [ $# -gt 0 ]; do
  case "$1" in
    --size) size="$2"; shift 2 ;;
    --data) data="$2"; shift 2 ;;
    --fp) fp="$2"; shift 2 ;;
    --steps) steps="$2"; shift 2 ;;
    -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "pretrain-base: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done

case "$size" in
  tiny)  hidden=64  layers=6 heads=4 kv=2 inter=172 vocab=512  seq=64  batch=8 nsteps=400 lr=3e-3 ;;
  small) hidden=256 layers=8 heads=4 kv=4 inter=688 vocab=2048 seq=128 batch=8 nsteps=500 lr=2e-3 ;;
  *) echo "pretrain-base: --size is tiny or small, not '$size'" >&2; exit 2 ;;
esac
[ -n "$steps" ] && nsteps="$steps"
case "$nsteps" in ''|*[!0-9]*) echo "pretrain-base: --steps takes a positive integer" >&2; exit 2 ;; esac
warmup=$(( nsteps / 20 + 1 ))

if [ -z "$fp" ]; then
  fp="$repo/build/tools/fp"
fi
if [ ! -x "$fp" ]; then
  echo "pretrain-base: $fp not found; build first (cmake -S . -B build -G Ninja && ninja -C build) or pass --fp" >&2
  exit 1
fi
cache="${FP_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/fedproxy}"
mkdir -p "$cache"

if [ -z "$data" ]; then
  data="$cache/data-default"
  [ -f "$data/manifest.json" ] || "$repo/scripts/data/build.sh" --out "$data" >&2
fi
public="$data/public.txt"
[ -f "$public" ] || { echo "pretrain-base: $public not found (build it with scripts/data/build.sh)" >&2; exit 1; }

config=$(cat <<EOF
{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": $hidden,
 "num_hidden_layers": $layers, "num_attention_heads": $heads, "num_key_value_heads": $kv,
 "intermediate_size": $inter, "vocab_size": $vocab, "rms_norm_eps": 1e-05, "rope_theta": 10000.0,
 "tie_word_embeddings": true, "max_position_embeddings": 1024, "bos_token_id": 0, "eos_token_id": 0}
EOF
)
recipe="tokenizer bpe vocab $vocab specials <|endoftext|>,<|pad|>; init seed 0; adamw lr $lr warmup $warmup cosine 0.1 weight-decay 0.01 clip 1.0 steps $nsteps batch $batch seq $seq seed 0"
version=$("$fp" version 2>/dev/null || echo unknown)
key=$( { echo "$config"; echo "$recipe"; echo "$version"; sha256sum < "$public"; } | sha256sum | cut -c1-16)
out="$cache/base-$size-$key"
if [ -f "$out/pretrain.json" ]; then
  echo "pretrain-base: cached $out" >&2
  echo "$out"
  exit 0
fi

# One run per key at a time; a second waits for the first and then finds the cache.
exec 9>"$cache/base-$size-$key.lock"
flock 9
if [ -f "$out/pretrain.json" ]; then echo "$out"; exit 0; fi
work="$cache/base-$size-$key.partial"
mkdir -p "$work"
echo "$config" > "$work/config.json"
if [ ! -f "$work/tk/tokenizer.json" ]; then
  "$fp" tokenizer train --files "$public" --vocab-size "$vocab" --out "$work/tk" >&2
fi
if [ ! -f "$work/init/model.safetensors" ]; then
  rm -rf "$work/init"
  "$fp" init --config "$work/config.json" --out "$work/init" --tokenizer "$work/tk/tokenizer.json" --seed 0 >&2
fi
resume=()
if [ -f "$work/model/checkpoint.fpck" ]; then
  echo "pretrain-base: resuming from $work/model/checkpoint.fpck" >&2
  resume=(--resume "$work/model")
fi
echo "pretrain-base: $size model ($layers layers, hidden $hidden, vocab $vocab), $nsteps steps of $batch x $seq tokens on $public" >&2
t0=$(date +%s)
"$fp" train --model "$work/init" --text "$public" --full --optimizer adamw --lr "$lr" --warmup "$warmup" \
  --cosine 0.1 --weight-decay 0.01 --clip 1.0 --steps "$nsteps" --batch "$batch" --seq "$seq" --seed 0 \
  --save-every 50 --out "$work/model" "${resume[@]}" >&2
t1=$(date +%s)

final="$out.tmp.$$"
rm -rf "$final"
mkdir -p "$final"
cp "$work/init/config.json" "$final/config.json"
cp "$work/model/model.safetensors" "$final/model.safetensors"
cp "$work/tk/tokenizer.json" "$final/tokenizer.json"
params=$(( vocab * hidden + layers * (2 * hidden + hidden * heads * (hidden / heads) + 2 * hidden * kv * (hidden / heads) + heads * (hidden / heads) * hidden + 3 * hidden * inter) + hidden ))
cat > "$final/pretrain.json" <<EOF
{"size": "$size", "parameters": $params, "config": $config,
 "recipe": "$recipe", "public_txt": "$public", "public_sha256": "$(sha256sum < "$public" | cut -d' ' -f1)",
 "fp_version": "$version", "train_seconds": $(( t1 - t0 ))}
EOF
sync "$final"/* 2>/dev/null || true
mv "$final" "$out"
rm -rf "$work"
rm -f "$cache/base-$size-$key.lock"
echo "pretrain-base: wrote $out ($(( t1 - t0 )) s of training)" >&2
echo "$out"
