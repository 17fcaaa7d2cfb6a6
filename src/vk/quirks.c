/* Vendor quirks as data: one table, matched on vendor and (optionally) device type.
 * Kernels read p->quirks; nothing else in the code tests vendor ids. */
#include "vk_internal.h"

static const struct quirk_row {
    fp_vendor vendor;
    int type; /* fp_device_type, or -1 for any */
    uint32_t quirks;
    const char *why;
} quirk_table[] = {
    {FP_VENDOR_MESA_CPU, -1, FP_QUIRK_SLOW_WG_BARRIERS,
     "llvmpipe runs workgroup barriers as thread switches: big barrier-tree reductions crawl"},
    {FP_VENDOR_ARM, -1, FP_QUIRK_NO_LARGE_K_SHARED,
     "Mali: shared memory is backed by global memory; wrong results seen with large-K tiles"},
    {FP_VENDOR_QUALCOMM, -1, FP_QUIRK_FRAGILE_COMPILER,
     "Adreno: the shader compiler rejects some complex shaders; fall back to simpler variants"},
    {FP_VENDOR_AMD, FP_DEVICE_DISCRETE, FP_QUIRK_ALLOC_LIMIT_2G,
     "AMD proprietary driver: allocations above 2 GiB fail"},
};

void fp_quirks_apply(fp_profile *p)
{
    for (size_t i = 0; i < sizeof quirk_table / sizeof quirk_table[0]; i++) {
        const struct quirk_row *q = &quirk_table[i];
        if (q->vendor == p->vendor && (q->type < 0 || q->type == (int)p->type))
            p->quirks |= q->quirks;
    }
    if ((p->quirks & FP_QUIRK_ALLOC_LIMIT_2G) && p->max_alloc > (2ull << 30))
        p->max_alloc = 2ull << 30;
}
