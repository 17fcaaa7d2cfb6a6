# The transformer engine's own kernels (src/model): LoRA dropout (hash mask, no
# stored mask; the backward regenerates it from the same key).
fp_shader(lora_dropout engine/dropout.comp)
