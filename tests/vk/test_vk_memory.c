/* Device memory: sub-allocation reuse, and allocation beyond the device's
 * memory failing cleanly with a message, after which the context still works. */
#include <stdlib.h>
#include <string.h>

#include "fedproxy/fileio.h"
#include "fedproxy/ops_basic.h"
#include "fedproxy/runtime.h"
#include "fp_test.h"

int main(void)
{
    fp_ctx *ctx = fp_test_ctx("");
    const fp_profile *p = fp_ctx_profile(ctx);

    /* many small tensors share blocks; freeing returns the space */
    fp_mem_stats ms0, ms1, ms2;
    fp_ctx_mem_stats(ctx, &ms0);
    fp_tensor *ts[100];
    for (int i = 0; i < 100; i++) {
        int64_t n = 1000 + 37 * i;
        CHECK_OK(fp_tensor_new(&ts[i], ctx, FP_F32, 1, &n));
    }
    fp_ctx_mem_stats(ctx, &ms1);
    CHECK(ms1.blocks == ms0.blocks); /* fits the existing 64 MiB block */
    CHECK(ms1.in_use > ms0.in_use);
    for (int i = 0; i < 100; i += 2)
        fp_tensor_free(ts[i]);
    for (int i = 0; i < 100; i += 2) {
        int64_t n = 900;
        CHECK_OK(fp_tensor_new(&ts[i], ctx, FP_F32, 1, &n)); /* fits in the holes */
    }
    fp_ctx_mem_stats(ctx, &ms2);
    CHECK(ms2.in_use < ms1.in_use && ms2.blocks == ms1.blocks);
    for (int i = 0; i < 100; i++)
        fp_tensor_free(ts[i]);
    fp_ctx_mem_stats(ctx, &ms2);
    CHECK(ms2.in_use == ms0.in_use);
    CHECK(ms2.peak_in_use >= ms1.in_use);

    /* one tensor larger than any allocation the device allows */
    fp_tensor *t = NULL;
    int64_t huge = (int64_t)(p->max_alloc / 4) + 1024;
    CHECK_ERR(fp_tensor_new(&t, ctx, FP_F32, 1, &huge), FP_EDEVMEM);
    CHECK(strstr(fp_errmsg(), p->name) != NULL && strstr(fp_errmsg(), "out of device memory") != NULL);
    CHECK(t == NULL);
    fp_test_ctx_done(ctx);

    /* a device with a 256 MiB heap (overlay): filling it fails cleanly, freeing recovers */
    char path[4300];
    snprintf(path, sizeof path, "%s/small.json", fp_test_tmpdir("memory"));
    const char *js = "{\"name\":\"small-heap\",\"device_local_bytes\":268435456}";
    CHECK_OK(fp_write_file_atomic(path, js, strlen(js), 0644));
    ctx = fp_test_ctx(path);
    fp_tensor *big[16] = {0};
    int made = 0, rc = 0;
    for (; made < 16; made++) {
        int64_t n = (48ll << 20) / 4; /* 48 MiB each */
        rc = fp_tensor_new(&big[made], ctx, FP_F32, 1, &n);
        if (rc)
            break;
    }
    CHECKF(rc == FP_EDEVMEM && made >= 3 && made < 6, "made %d tensors of 48 MiB, rc %d", made, rc);
    CHECK(strstr(fp_errmsg(), "MiB") != NULL);
    /* the context still works after the failure */
    int64_t n = 1000;
    fp_tensor *x;
    CHECK_OK(fp_tensor_new(&x, ctx, FP_F32, 1, &n));
    fp_stream *s;
    CHECK_OK(fp_stream_new(&s, ctx));
    CHECK_OK(fp_op_axpb(s, x, x, 0.0f, 7.0f));
    CHECK_OK(fp_stream_run(s));
    float v[1000];
    CHECK_OK(fp_tensor_download(v, sizeof v, x));
    CHECK(v[999] == 7.0f);
    fp_stream_free(s);
    fp_tensor_free(x);
    for (int i = 0; i < made; i++)
        fp_tensor_free(big[i]);
    int64_t m = (48ll << 20) / 4;
    CHECK_OK(fp_tensor_new(&big[0], ctx, FP_F32, 1, &m));
    fp_tensor_free(big[0]);
    fp_test_ctx_done(ctx);
    return fp_test_report("test_vk_memory");
}
