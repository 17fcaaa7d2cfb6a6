/* Training-shape recommendation: derived from memory and measured speed. */
#include <string.h>

#include "fedproxy/recommend.h"
#include <stdio.h>

#include "fp_test.h"

static fp_profile device(uint64_t heap_mib, int uma)
{
    fp_profile p;
    memset(&p, 0, sizeof p);
    snprintf(p.name, sizeof p.name, "test device");
    p.device_local_bytes = heap_mib << 20;
    p.uma = uma;
    return p;
}

int main(void)
{
    fp_model_shape model = fp_model_shape_bench();
    fp_measured slow = {0}, fast = {0};
    slow.valid = fast.valid = 1;
    slow.matmul_gflops = 10;
    fast.matmul_gflops = 20000;
    fp_train_plan a, b, c;

    fp_profile big = device(16384, 0), small = device(1024, 1);
    CHECK_OK(fp_recommend_train(&a, &big, &fast, &model, 0, 0));
    CHECK_OK(fp_recommend_train(&b, &big, &slow, &model, 0, 0));
    CHECK(a.rank > b.rank);                               /* compute buys rank */
    CHECK((double)a.batch * a.seq >= (double)b.batch * b.seq); /* and tokens per step */
    CHECK(a.bytes <= a.budget && b.bytes <= b.budget);
    CHECK(b.step_seconds <= 2.0 || (b.batch == 1 && strstr(b.why, "speed")));
    CHECK(a.rank == 64);

    /* same speed, less memory: never more tokens */
    CHECK_OK(fp_recommend_train(&c, &small, &fast, &model, 0, 0));
    CHECK((double)c.batch * c.seq <= (double)a.batch * a.seq);
    CHECK(c.budget == (512ull << 20)); /* UMA: half the heap */
    CHECK(c.bytes <= c.budget);

    /* an explicit budget is respected */
    CHECK_OK(fp_recommend_train(&c, &big, &fast, &model, 200ull << 20, 0));
    CHECK(c.bytes <= (200ull << 20) && c.budget == (200ull << 20));

    /* without measurements it says it assumed */
    CHECK_OK(fp_recommend_train(&c, &big, NULL, &model, 0, 0));
    CHECK(strstr(c.why, "assumed") != NULL);

    /* the model cannot fit at all: a clear error */
    CHECK_ERR(fp_recommend_train(&c, &big, &fast, &model, 1ull << 20, 0), FP_EDEVMEM);
    model.layers = 0;
    CHECK_ERR(fp_recommend_train(&c, &big, &fast, &model, 0, 0), FP_EINVAL);

    /* the byte plan grows with every knob */
    model = fp_model_shape_bench();
    CHECK(fp_recommend_bytes(&model, 8, 2, 128) > fp_recommend_bytes(&model, 4, 2, 128));
    CHECK(fp_recommend_bytes(&model, 4, 4, 128) > fp_recommend_bytes(&model, 4, 2, 128));
    CHECK(fp_recommend_bytes(&model, 4, 2, 256) > fp_recommend_bytes(&model, 4, 2, 128));
    return fp_test_report("test_recommend");
}
