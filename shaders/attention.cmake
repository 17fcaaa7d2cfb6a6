# Attention family: RoPE, fused causal GQA attention forward / backward / decode.
# Head dim (D) and tile sizes are specialization constants (3 = D, 4 = tile,
# 5 = rows per invocation for SG); workgroup size is constant 0.
#   *_tiled   shared-memory tiles (every profile, "minimal" included)
#   *_direct  rows read straight from global memory (no shared memory, no barriers)
#   *_sg      subgroup-shuffle sharing of loaded rows, several rows per invocation
#             (needs subgroup ops and subgroup size >= 8; lavapipe's fast path)
#   attn_reduce_* fixed-order sums of the split backward kernels' partial slices
fp_shader(rope_f32 attention/rope.comp)
fp_shader(attn_fwd_tiled attention/attn_fwd.comp)
fp_shader(attn_fwd_direct attention/attn_fwd.comp DEFINES DIRECT=1)
fp_shader(attn_combine attention/attn_combine.comp)
fp_shader(attn_bwd_dq_tiled attention/attn_bwd_dq.comp)
fp_shader(attn_bwd_dq_direct attention/attn_bwd_dq.comp DEFINES DIRECT=1)
fp_shader(attn_bwd_dkv_tiled attention/attn_bwd_dkv.comp)
fp_shader(attn_bwd_dkv_direct attention/attn_bwd_dkv.comp DEFINES DIRECT=1)
fp_shader(attn_fwd_sg attention/attn_fwd.comp DEFINES SG=1)
fp_shader(attn_bwd_dq_sg attention/attn_bwd_dq.comp DEFINES SG=1)
fp_shader(attn_bwd_dkv_sg attention/attn_bwd_dkv.comp DEFINES SG=1)
fp_shader(attn_reduce_dkv attention/attn_reduce_split.comp)
fp_shader(attn_reduce_dq attention/attn_reduce_split.comp DEFINES DQ=1)
