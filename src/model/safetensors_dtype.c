/* safetensors dtypes and the half-precision <-> f32 conversions. Written against
 * the IEEE 754 binary16 / bfloat16 layouts, bit by bit, so results do not depend
 * on the compiler's _Float16 support. */
#include "fedproxy/safetensors.h"

#include <string.h>

#include "error_internal.h"

static const struct {
    const char *name;
    size_t size;
} dtypes[] = {
    [FP_ST_F32] = {"F32", 4}, [FP_ST_F16] = {"F16", 2}, [FP_ST_BF16] = {"BF16", 2},
    [FP_ST_F64] = {"F64", 8}, [FP_ST_I32] = {"I32", 4}, [FP_ST_I64] = {"I64", 8},
    [FP_ST_U8] = {"U8", 1},
};
#define N_DTYPES (sizeof dtypes / sizeof dtypes[0])

const char *fp_st_dtype_name(int dtype)
{
    return dtype > 0 && (size_t)dtype < N_DTYPES ? dtypes[dtype].name : NULL;
}

size_t fp_st_dtype_size(int dtype)
{
    return dtype > 0 && (size_t)dtype < N_DTYPES ? dtypes[dtype].size : 0;
}

int fp_st_dtype_parse(const char *name)
{
    for (size_t i = 1; i < N_DTYPES; i++)
        if (name && strcmp(name, dtypes[i].name) == 0)
            return (int)i;
    return 0;
}

static float f32_from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint32_t bits_from_f32(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

float fp_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    if (exp == 0x1f) /* inf, or nan with its payload kept */
        return f32_from_bits(sign | 0x7f800000u | (man << 13));
    if (exp == 0) {
        if (man == 0)
            return f32_from_bits(sign);
        /* subnormal: man x 2^-24, exactly representable as a normal f32 */
        float v = (float)man * (1.0f / 16777216.0f);
        return sign ? -v : v;
    }
    return f32_from_bits(sign | ((exp + 112) << 23) | (man << 13));
}

uint16_t fp_f32_to_f16(float f)
{
    uint32_t x = bits_from_f32(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) {
        if (ax == 0x7f800000u)
            return sign | 0x7c00u;
        uint32_t m = (ax >> 13) & 0x3ff;
        return (uint16_t)(sign | 0x7c00u | (m ? m : 0x200u)); /* a nan stays a nan */
    }
    if (ax >= 0x477ff000u) /* >= 65520: halfway to 2^16 or beyond rounds to inf */
        return sign | 0x7c00u;
    if (ax < 0x38800000u) { /* below 2^-14: a half subnormal (or zero) */
        if (ax < 0x33000000u) /* below 2^-25: rounds to zero */
            return sign;
        uint32_t e = ax >> 23;
        uint32_t m = (ax & 0x7fffffu) | 0x800000u; /* value = m x 2^(e-150) */
        uint32_t shift = 126 - e;                  /* to units of 2^-24: 14..24 */
        uint32_t r = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1);
        uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1)))
            r++; /* may carry into the smallest normal, whose encoding is r itself */
        return (uint16_t)(sign | r);
    }
    uint32_t r = (ax - 0x38000000u) >> 13; /* rebias exponent 127 -> 15 */
    uint32_t rem = ax & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (r & 1)))
        r++;
    return (uint16_t)(sign | r);
}

float fp_bf16_to_f32(uint16_t b) { return f32_from_bits((uint32_t)b << 16); }

uint16_t fp_f32_to_bf16(float f)
{
    uint32_t x = bits_from_f32(f);
    if ((x & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((x >> 16) | 0x40u); /* quiet nan, never rounded into inf */
    x += 0x7fffu + ((x >> 16) & 1u);          /* round to nearest even */
    return (uint16_t)(x >> 16);
}

int fp_st_to_f32(float *out, size_t n, const fp_st_tensor *t)
{
    if (!out || !t)
        return fp_seterr(FP_EINVAL, "fp_st_to_f32: NULL argument");
    if (n != t->numel)
        return fp_seterr(FP_ESHAPE, "tensor '%s' has %llu elements, caller expected %zu", t->name,
                         (unsigned long long)t->numel, n);
    const unsigned char *p = t->data;
    switch (t->dtype) {
    case FP_ST_F32:
        memcpy(out, p, n * 4);
        return 0;
    case FP_ST_F16:
    case FP_ST_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h = (uint16_t)(p[2 * i] | (p[2 * i + 1] << 8));
            out[i] = t->dtype == FP_ST_F16 ? fp_f16_to_f32(h) : fp_bf16_to_f32(h);
        }
        return 0;
    default:
        return fp_seterr(FP_EUNSUPPORTED, "tensor '%s' is %s; only F32, F16 and BF16 convert to f32",
                         t->name, fp_st_dtype_name(t->dtype) ? fp_st_dtype_name(t->dtype) : "?");
    }
}
