/* Upload/download round trips of odd sizes in every dtype, on the mapped (UMA)
 * path and on the staging path (the 'nvidia' overlay turns UMA off), plus views. */
#include <stdlib.h>
#include <string.h>

#include "fedproxy/runtime.h"
#include "fp_test.h"

static void round_trips(fp_ctx *ctx)
{
    static const int64_t sizes[] = {1, 3, 7, 33, 257, 1000, 4099, 1 << 20, (16 << 20) / 4 + 5};
    for (int dt = 0; dt < FP_DTYPE_COUNT; dt++) {
        for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
            int64_t n = sizes[k];
            size_t bytes = (size_t)n * fp_dtype_size((fp_dtype)dt);
            unsigned char *src = malloc(bytes), *dst = malloc(bytes);
            for (size_t i = 0; i < bytes; i++)
                src[i] = (unsigned char)fp_test_u32();
            memset(dst, 0xAB, bytes);
            fp_tensor *t = NULL;
            CHECK_OK(fp_tensor_new(&t, ctx, (fp_dtype)dt, 1, &n));
            if (t) {
                CHECK(t->nbytes == bytes);
                CHECK_OK(fp_tensor_upload(t, src, bytes));
                CHECK_OK(fp_tensor_download(dst, bytes, t));
                CHECKF(memcmp(src, dst, bytes) == 0, "dtype %s n %lld", fp_dtype_name((fp_dtype)dt), (long long)n);
                /* a wrong byte count is a shape error, not a crash */
                CHECK_ERR(fp_tensor_upload(t, src, bytes - 1), FP_ESHAPE);
                CHECK_OK(fp_tensor_zero(t));
                CHECK_OK(fp_tensor_download(dst, bytes, t));
                size_t nz = 0;
                for (size_t i = 0; i < bytes; i++)
                    nz += dst[i] != 0;
                CHECK(nz == 0);
            }
            fp_tensor_free(t);
            free(src);
            free(dst);
        }
    }
    /* 2-D tensor and a view of its second row */
    int64_t shape[2] = {3, 37};
    fp_tensor *m = NULL, *row = NULL;
    float data[3 * 37], back[37];
    for (int i = 0; i < 3 * 37; i++)
        data[i] = (float)i;
    CHECK_OK(fp_tensor_new(&m, ctx, FP_F32, 2, shape));
    CHECK(fp_tensor_numel(m) == 111);
    CHECK_OK(fp_tensor_upload(m, data, sizeof data));
    int64_t rs = 37;
    CHECK_OK(fp_tensor_view(&row, m, 37, FP_F32, 1, &rs));
    CHECK_OK(fp_tensor_download(back, sizeof back, row));
    CHECK(memcmp(back, data + 37, sizeof back) == 0);
    fp_tensor *bad = NULL;
    CHECK_ERR(fp_tensor_view(&bad, m, 100, FP_F32, 1, &rs), FP_ESHAPE);
    CHECK(bad == NULL);
    int64_t zero = 0;
    CHECK_ERR(fp_tensor_new(&bad, ctx, FP_F32, 1, &zero), FP_EINVAL);
    fp_tensor_free(row);
    fp_tensor_free(m);

    /* zeroing an unaligned byte view leaves its neighbours alone */
    int64_t nb = 7, nv = 3;
    unsigned char ones[7], got[7];
    memset(ones, 0xFF, sizeof ones);
    fp_tensor *bytes = NULL, *mid = NULL;
    CHECK_OK(fp_tensor_new(&bytes, ctx, FP_U8, 1, &nb));
    CHECK_OK(fp_tensor_upload(bytes, ones, sizeof ones));
    CHECK_OK(fp_tensor_view(&mid, bytes, 1, FP_U8, 1, &nv));
    CHECK_OK(fp_tensor_zero(mid));
    CHECK_OK(fp_tensor_download(got, sizeof got, bytes));
    CHECK(got[0] == 0xFF && got[1] == 0 && got[2] == 0 && got[3] == 0 && got[4] == 0xFF && got[6] == 0xFF);
    fp_tensor_free(mid);
    fp_tensor_free(bytes);

    /* transfers of several staging chunks (16 MiB each, two in flight: the
     * halves are reused) with a tail, whole and through a view whose offset
     * is no multiple of a chunk: every byte lands where it belongs */
    int64_t nbig = (int64_t)(53 << 20) / 4 + 3, vo = 1001, vn = nbig - vo - 17;
    float *src = malloc((size_t)nbig * 4), *dst = malloc((size_t)nbig * 4);
    for (int64_t i = 0; i < nbig; i++)
        src[i] = (float)(i % 1000003) - 0.5f;
    fp_tensor *big = NULL, *part = NULL;
    CHECK_OK(fp_tensor_new(&big, ctx, FP_F32, 1, &nbig));
    CHECK_OK(fp_tensor_upload(big, src, (size_t)nbig * 4));
    memset(dst, 0, (size_t)nbig * 4);
    CHECK_OK(fp_tensor_download(dst, (size_t)nbig * 4, big));
    CHECK(memcmp(src, dst, (size_t)nbig * 4) == 0);
    CHECK_OK(fp_tensor_view(&part, big, vo, FP_F32, 1, &vn));
    for (int64_t i = 0; i < vn; i++)
        src[vo + i] = -src[vo + i];
    CHECK_OK(fp_tensor_upload(part, src + vo, (size_t)vn * 4));
    CHECK_OK(fp_tensor_download(dst, (size_t)nbig * 4, big));
    CHECK(memcmp(src, dst, (size_t)nbig * 4) == 0);
    memset(dst, 0, (size_t)vn * 4);
    CHECK_OK(fp_tensor_download(dst, (size_t)vn * 4, part));
    CHECK(memcmp(src + vo, dst, (size_t)vn * 4) == 0);
    fp_tensor_free(part);
    fp_tensor_free(big);
    free(src);
    free(dst);
}

int main(void)
{
    fp_test_seed(42);
    fp_ctx *ctx = fp_test_ctx("");
    /* lavapipe (a CPU device) is UMA: tensors are mapped directly; a discrete
     * GPU never is: every transfer goes through staging */
    const fp_profile *p = fp_ctx_profile(ctx);
    if (p->type == FP_DEVICE_CPU)
        CHECK(p->uma == 1);
    if (p->type == FP_DEVICE_DISCRETE)
        CHECK(p->uma == 0);
    printf("native profile: %s, uma %d\n", p->name, p->uma);
    round_trips(ctx);
    fp_test_ctx_done(ctx);

    ctx = fp_test_ctx("nvidia"); /* discrete-style: staging copies */
    CHECK(fp_ctx_profile(ctx)->uma == 0);
    round_trips(ctx);
    fp_test_ctx_done(ctx);
    return fp_test_report("test_vk_tensor");
}
