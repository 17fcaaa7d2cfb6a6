/* Layer selection: uniform reproduces Offsite-Tuning's uniform_choose_layers
 * (expected layers worked out by hand from idx = round(i * (n-1)/(m-1)) with
 * Python's round-half-even), influence keeps the top-m middle layers, spans
 * partition 0..L-1, and bad arguments are refused. */
#include <string.h>

#include "fedproxy/proxy.h"
#include "fp_test.h"

static void expect(const char *method, const double *scores, int L, int kf, int kl, int m, const int *want, int n)
{
    fp_proxy_map map;
    CHECK_OK(fp_proxy_select(&map, scores, L, kf, kl, m, method));
    CHECKF(map.proxy_layers == n, "%s L=%d m=%d: %d layers kept, want %d", method, L, m, map.proxy_layers, n);
    for (int i = 0; i < n && i < map.proxy_layers; i++)
        CHECKF(map.layers[i].llm == want[i], "%s L=%d m=%d: proxy layer %d is LLM layer %d, want %d", method, L, m, i,
               map.layers[i].llm, want[i]);
    /* spans partition 0..L-1 in order, each starting at its kept layer (the first at 0) */
    int next = 0;
    for (int i = 0; i < map.proxy_layers; i++) {
        CHECK(map.layers[i].span_first == next);
        CHECK(map.layers[i].span_first <= map.layers[i].llm && map.layers[i].llm <= map.layers[i].span_last);
        if (i > 0)
            CHECK(map.layers[i].span_first == map.layers[i].llm);
        next = map.layers[i].span_last + 1;
    }
    CHECK(next == L && map.llm_layers == L && !strcmp(map.select, method));
}

int main(void)
{
    /* uniform: L=12, middle 2..9 (n=8), m=4: stride 7/3 -> 0, 2.33->2, 4.67->5, 7 */
    expect("uniform", NULL, 12, 2, 2, 4, (const int[]){0, 1, 2, 4, 7, 9, 10, 11}, 8);
    /* L=10, n=6, m=3: stride 2.5 -> 0, round(2.5) = 2 (half to even), 5 */
    expect("uniform", NULL, 10, 2, 2, 3, (const int[]){0, 1, 2, 4, 7, 8, 9}, 7);
    /* L=8, n=4, m=3: stride 1.5 -> 0, round(1.5) = 2, 3 */
    expect("uniform", NULL, 8, 2, 2, 3, (const int[]){0, 1, 2, 4, 5, 6, 7}, 7);
    /* L=24, n=20, m=5: stride 4.75 -> 0, 4.75->5, 9.5->10 (even), 14.25->14, 19 */
    expect("uniform", NULL, 24, 2, 2, 5, (const int[]){0, 1, 2, 7, 12, 16, 21, 22, 23}, 9);
    /* m = n keeps everything; m = 0 only the ends; m = 1 the first middle layer */
    expect("uniform", NULL, 6, 2, 2, 2, (const int[]){0, 1, 2, 3, 4, 5}, 6);
    expect("uniform", NULL, 8, 2, 2, 0, (const int[]){0, 1, 6, 7}, 4);
    expect("uniform", NULL, 8, 2, 2, 1, (const int[]){0, 1, 2, 6, 7}, 5);
    expect("uniform", NULL, 9, 1, 3, 2, (const int[]){0, 1, 5, 6, 7, 8}, 6);

    /* influence: the top-m middle layers by score, in layer order; the ends
     * are kept whatever their scores */
    const double s[10] = {0.01, 0.02, 0.30, 0.05, 0.90, 0.10, 0.20, 0.40, 0.99, 0.97};
    expect("influence", s, 10, 2, 2, 3, (const int[]){0, 1, 2, 4, 7, 8, 9}, 7);
    expect("influence", s, 10, 2, 2, 1, (const int[]){0, 1, 4, 8, 9}, 5);
    /* ties go to the lower layer */
    const double t[8] = {0, 0, 0.5, 0.5, 0.5, 0.1, 0, 0};
    expect("influence", t, 8, 2, 2, 2, (const int[]){0, 1, 2, 3, 6, 7}, 6);
    /* no ends kept: proxy layer 0's span still starts at 0 */
    expect("influence", s, 10, 0, 0, 2, (const int[]){8, 9}, 2);
    fp_proxy_map map;
    CHECK_OK(fp_proxy_select(&map, s, 10, 0, 0, 2, "influence"));
    CHECK(map.layers[0].span_first == 0 && map.layers[0].span_last == 8 && map.layers[1].span_first == 9 &&
          map.layers[1].span_last == 9);
    CHECK(map.has_scores && map.scores[4] == 0.90);

    /* bad arguments */
    CHECK_ERR(fp_proxy_select(&map, NULL, 8, 2, 2, 5, "uniform"), FP_EINVAL);  /* m > middle */
    CHECK_ERR(fp_proxy_select(&map, NULL, 8, 5, 4, 0, "uniform"), FP_EINVAL);  /* ends overlap */
    CHECK_ERR(fp_proxy_select(&map, NULL, 8, 2, 2, 2, "random"), FP_EINVAL);   /* unknown method */
    CHECK_ERR(fp_proxy_select(&map, NULL, 8, 2, 2, 2, "influence"), FP_EINVAL); /* no scores */
    CHECK_ERR(fp_proxy_select(&map, NULL, 8, -1, 2, 2, "uniform"), FP_EINVAL);
    CHECK_ERR(fp_proxy_select(&map, NULL, 8, 0, 0, 0, "uniform"), FP_EINVAL);  /* nothing kept */
    CHECK_ERR(fp_proxy_select(&map, NULL, 0, 0, 0, 0, "uniform"), FP_EINVAL);
    CHECK_ERR(fp_proxy_select(&map, NULL, FP_PROXY_MAX_LAYERS + 1, 2, 2, 2, "uniform"), FP_EINVAL);
    const double nanscore[4] = {0, 0.0 / 0.0, 0, 0};
    CHECK_ERR(fp_proxy_select(&map, nanscore, 4, 1, 1, 1, "influence"), FP_EINVAL);
    return fp_test_report("proxy_select");
}
