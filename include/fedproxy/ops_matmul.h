/* fedproxy: matrix multiplication on the device, the C reference, the
 * autotuner and the benchmark.
 *
 *   C[b] = alpha * op(A[b]) * op(B[b]) + beta * C[b],   b = 0 .. batch-1
 *
 * Layouts: every matrix is row-major with a leading dimension (elements between
 * rows). op(A) is M x K: A is stored M x K (trans_a = 0) or K x M (trans_a = 1);
 * op(B) is K x N: B is stored K x N (trans_b = 0) or N x K (trans_b = 1); C is
 * M x N. So A*B, A*B^T (x * W^T with W stored out x in) and A^T*B (weight
 * gradients) are all one call. Batched matrices sit stride_* elements apart
 * (multi-head shapes). Accumulation is f32; A and C are f32, B is f32, f16 or bf16
 * (frozen base weights). beta == 0 never reads C; beta == 1 accumulates
 * (gradient accumulation).
 *
 * Variants (chosen per device from fp_ctx_profile and fp_ctx_measured, or forced
 * by name in the desc; see fp_matmul_variant_names):
 *   "sg_<TM>x<TN>"   subgroup kernel, no shared memory (needs subgroup ops and a
 *                    fixed subgroup size; the fastest on llvmpipe)
 *   "reg_<TM>x<TN>"  register-blocked, no shared memory, no barriers: runs everywhere
 *                    ("reg_4x4" and "reg_8x8" fit the 'minimal' profile)
 *   "tiled_small|medium|large"  shared-memory tiles + register blocking (GPUs);
 *                    small = 32x32 tile, 64 invocations, 2 KiB: fits 'minimal'
 *   "cm_64x64|cm_128x128"  cooperative matrices (tensor cores) through
 *                    VK_NV_cooperative_matrix (NVIDIA Turing and newer; profile
 *                    coopmat): A and B are ROUNDED TO F16, products accumulate in
 *                    f32, alpha/beta apply in f32. For data within f16 range only:
 *                    |values| above 65504 overflow to inf, small ones lose
 *                    precision (relative rounding 2^-11 per input, NMSE ~1e-7 on
 *                    N(0,1) data). 128 invocations (4 subgroups of exactly 32),
 *                    64x64 or 128x128 tile, K step 32, 13.5 / 22.5 KiB shared memory.
 *                    Same desc support as the others (trans, batch, strides, any
 *                    size, B f32/f16/bf16). The KHR extension (AMD, Intel) is not
 *                    built: its GLSL needs a newer glslang.
 *                    Reduced precision is opt-in: the cm variants are never picked
 *                    automatically unless FP_MATMUL_F16=1 is set in the environment
 *                    or the measured profile's tune key "matmul.allow_f16" is "1"
 *                    (fp_matmul_f16_allowed); without that they run only when
 *                    named in desc.variant, and in fp_bench_matmul.
 *   "cm_64x64_emu|cm_128x128_emu"  test hook (not in fp_matmul_variant_names, never
 *                    picked): the cm kernel's staging, fragment offsets and epilogue
 *                    with the matrix operations emulated in scalar arithmetic on the
 *                    same f16 tiles; needs only f16 arithmetic (runs on lavapipe).
 * Default without tuning: CPU devices (llvmpipe) take sg_32x8 below 128^3 flops
 * from 64 rows and sg_16x8 under them, sg_16x8 for small/skinny shapes and
 * sg_32x8 for the rest (reg_16x16 without usable subgroups); GPUs take
 * tiled_large/medium for big shapes and tiled_small for small ones, always
 * capped by what the profile fits. Tuned choices come from fp_ctx_measured
 * ("matmul.f32.<class>", written by fp_matmul_autotune through fp-probe) and
 * apply to every B dtype.
 * Each of sg/reg uses vec4 loads when K, the row strides, offsets and the vector
 * dimensions are multiples of 4, else scalar loads; tails are always handled.
 * f16 B uses 16-bit storage where the profile has it, else packed uint words;
 * bf16 is always unpacked from uint words. The cm variants use scalar loads only.
 * Texel reads: the sg variants fetch A and B as uniform texel buffers (vec4
 * texels on the vec4 path, single floats on the scalar one; f16 and bf16 B as
 * single uint texels of two packed halves, when B's size is whole words) where
 * fp_ops_texel_reads says so (by default on CPU devices; FP_TEXEL_READS=0|1
 * overrides) and both operands fit (fp_ctx_texel_fits: offset alignment, the
 * device's texel count); otherwise storage buffers. Why: llvmpipe loads a
 * storage buffer lane by lane and fetches a texel for all 8 lanes at once; the
 * sg kernels' A and B loads are per-lane gathers, and through texels
 * sg_32x8 went from 6.8 to 25.7 GFLOP/s at 512^3 on a 2-core lavapipe.
 * d->texel reports which path ran.
 *
 * Split-K: when the output has too few workgroup tiles to fill a GPU and K is
 * long, K is split into S chunks: one dispatch of the chosen variant computes
 * the S partial products (chunks as batches; a second one for a shorter last
 * chunk; for batch > 1 one dispatch per chunk over all batches) into stream
 * scratch (fp_stream_scratch), and mm_splitk_reduce writes
 * C = alpha * sum_s P_s + beta * C, s in fixed order (deterministic; only the
 * f32 summation order differs from the unsplit product). d->chosen then reads
 * "<variant>+splitk<S>" (e.g. "reg_4x4+splitk8"); a variant named in the desc
 * is split the same way (fp_bench_matmul and the autotuner time what runs).
 * Automatic rule: never on CPU
 * devices (llvmpipe); on GPUs when tiles*batch < 512 and K >= 256, with
 * S = min(512 / (tiles*batch), K / 64, 16), split when S >= 2 (src/ops/matmul.c
 * gives the H100 LoRA measurements behind it). Override: environment
 * FP_MATMUL_SPLITK, else the tuned key "matmul.splitk": "1" never splits, S >= 2
 * splits into S chunks on any device (clamped to 16), "0"/"auto" = automatic.
 * Chunk length kc = ceil(K / S), rounded up to a multiple of 4 when K is one; the
 * chunk count is ceil(K / kc) (S > K gives K chunks of 1; under 2 chunks: no
 * split). Not split: K < 2, operands past the storage range, or when the scratch
 * (S * batch * M * N floats) cannot be allocated or bound (then the unsplit path
 * runs, the error cleared).
 *
 * Limits: every index fits 32 bits. A binding larger than the profile's
 * storage_range is processed in chunks of rows of A/C (non-transposed A, one
 * matrix); other oversize cases fail with FP_EUNSUPPORTED naming the sizes.
 *
 * Threading: like every op, records into a stream used by one thread at a time.
 */
#ifndef FEDPROXY_OPS_MATMUL_H
#define FEDPROXY_OPS_MATMUL_H

#include "fedproxy/runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct fp_matmul_desc {
    int64_t M, N, K;
    int64_t batch;                        /* number of matrices; 0 means 1 */
    int64_t lda, ldb, ldc;                /* leading dimensions; 0 = packed */
    int64_t stride_a, stride_b, stride_c; /* elements between batch matrices; 0 = packed */
    int trans_a, trans_b;
    float alpha, beta;                    /* alpha 0 is taken literally */
    const char *variant;                  /* NULL: auto; else a name (FP_EUNSUPPORTED if
                                             the profile cannot run it) */
    const char *chosen;                   /* out: the variant that was recorded (static string;
                                             "<variant>+splitk<S>" when split along K) */
    int texel;                            /* out: 4 (vec4 path) or 1 (scalar path) when A and B
                                             were fetched as texels, 0 when (any part) read
                                             them as storage buffers */
} fp_matmul_desc;

/* A desc for C = A*B with M, N, K, alpha 1, beta 0, everything else default. */
fp_matmul_desc fp_matmul_desc_make(int64_t M, int64_t N, int64_t K);

/* A desc for C [M, N] = alpha * op(A) op(B) + beta * C with every operand's
 * rows packed: A stored [M, K] (trans_a: [K, M]), B [K, N] (trans_b: [N, K]).
 * The leading dimensions are given explicitly, so the tensors may hold more
 * elements than the product reads (views of arenas, flattened leading dims). */
fp_matmul_desc fp_matmul_desc_packed(int64_t M, int64_t N, int64_t K, int trans_a, int trans_b, float alpha,
                                     float beta);

/* Records C = alpha*op(A)*op(B) + beta*C. A, C f32; B f32/f16/bf16. Tensors only
 * need enough elements for the described matrices (any ndim); when the leading
 * dimensions are packed (0) and a tensor has 2 dims, its shape must be exactly the
 * stored matrix shape. FP_ESHAPE on any mismatch, FP_EINVAL on bad arguments. */
int fp_matmul(fp_stream *s, fp_tensor *C, const fp_tensor *A, const fp_tensor *B, fp_matmul_desc *d);

/* The same on host floats in double precision (B as f32; use fp_matmul_ref_b16
 * for f16/bf16 B given as raw 16-bit words, widened with fedproxy/safetensors.h's
 * fp_f16_to_f32 / fp_bf16_to_f32). */
void fp_matmul_ref(float *C, const float *A, const float *B, const fp_matmul_desc *d);
void fp_matmul_ref_b16(float *C, const float *A, const uint16_t *B, fp_dtype b_dtype, const fp_matmul_desc *d);

/* Every variant name, NULL-terminated, and whether ctx's profile can run it. */
extern const char *const fp_matmul_variant_names[];
int fp_matmul_variant_ok(fp_ctx *ctx, const char *name);

/* 1 for the variants that round A and B to f16 (the "cm_*" ones, the test hooks
 * "cm_*_emu" too), else 0. */
int fp_matmul_variant_f16(const char *name);

/* 1 when automatic choice may use f16-input variants: the environment's
 * FP_MATMUL_F16 (any value but "" or "0"; "0" forbids even a tuned "1"), else the
 * measured profile's "matmul.allow_f16" == "1". ctx may be NULL (environment only). */
int fp_matmul_f16_allowed(fp_ctx *ctx);

/* 1 for the variants whose pipelines take llvmpipe's LLVM 10 s to a minute to
 * compile (sg_64x16, sg_64x8, sg_32x16, reg_32x32): never picked by default,
 * only when tuned (Mesa caches compiled shaders on disk). */
int fp_matmul_variant_heavy(const char *name);

/* The variant fp_matmul would pick for this shape (tuned or heuristic). Never an
 * f16-input variant unless fp_matmul_f16_allowed(ctx). */
const char *fp_matmul_pick(fp_ctx *ctx, int64_t M, int64_t N, int64_t K);

/* Shape class used for tuning keys: "small", "medium", "large" or "skinny". */
const char *fp_matmul_class(int64_t M, int64_t N, int64_t K);

/* Times every runnable variant on one shape per class (after checking it against
 * fp_matmul_ref on a small odd shape), writes the winners into m with
 * fp_measured_tune_set(m, "matmul.f32.<class>", name) (f32 variants only) and, where
 * an f16-input variant runs, "matmul.f16.<class>" (winner among all, used only when
 * fp_matmul_f16_allowed), and m->matmul_gflops (best f32 at 1024^3; 512^3 when
 * quick). Does not save m. */
int fp_matmul_autotune(fp_ctx *ctx, fp_measured *m, int quick);

/* Benchmark: GFLOP/s of every runnable variant (f16-input ones included; the
 * JSON's "precision" object names each variant's precision) on square 256..2048
 * (quick: 256, 512) and the engine shapes, with OpenBLAS cblas_sgemm on the same
 * shapes where the library was built with it. best_variant is over all variants,
 * best_f32_variant over the f32 ones. *json_out: malloc'd JSON (caller frees). */
int fp_bench_matmul(fp_ctx *ctx, int quick, char **json_out);

/* Host OpenBLAS sgemm timing (best of reps, seconds) for C = A*B (M x K times
 * K x N); FP_EUNSUPPORTED when built without OpenBLAS. */
int fp_matmul_host_blas_time(int64_t M, int64_t N, int64_t K, int reps, double *seconds);

#ifdef __cplusplus
}
#endif
#endif
