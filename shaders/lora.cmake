# LoRA: a strided tiled matmul (B operand in f32, f16 or bf16) that the host
# composes into the two-step forward and the B*A-free backward (src/ops/lora.c).
fp_shader(lora_mm_f32 lora/mm.comp)
fp_shader(lora_mm_f16 lora/mm.comp DEFINES BF16=1)
fp_shader(lora_mm_bf16 lora/mm.comp DEFINES BBF16=1)
