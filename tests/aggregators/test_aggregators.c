/* Every aggregator (plain) against a direct computation in agg_direct.h,
 * with clients of different LoRA ranks; DARE's mask; the clustering; the
 * screening of NaN/Inf/wrong-shape/outlier updates; option and
 * configuration errors. */
#include <stdio.h>

#include <cjson/cJSON.h>

#include "agg_direct.h"
#include "fedproxy/fed.h"
#include "fedproxy/ops_aggregate.h"

#define K 5

static double W5[K] = {120, 40, 300, 75, 10};

static void clients(fp_agg_client *cl, const int *rank, const int *steps)
{
    static const char *names[K] = {"alice", "bob", "carol", "dave", "erin"};
    for (int k = 0; k < K; k++) {
        memset(&cl[k], 0, sizeof cl[k]);
        cl[k].weight = W5[k];
        cl[k].rank = rank ? rank[k] : 0;
        cl[k].steps = steps ? steps[k] : 0;
        cl[k].id = 100 + (uint32_t)k;
        cl[k].name = names[k];
    }
}

static void test_fedavg_fednova(void)
{
    size_t dim = 333;
    float **x = ad_rows(K, dim, -1, 1);
    float *got = malloc(dim * 4), *want = malloc(dim * 4);
    int tau[K] = {1, 3, 5, 2, 8};
    fp_agg_client cl[K];
    clients(cl, NULL, tau);
    fp_agg_ctx c = {.dim = dim, .max_steps = 8};
    const fp_aggregator *a;
    CHECK_OK(fp_aggregator_find(&a, "fedavg"));
    CHECK_OK(fp_agg_aggregate_plain(a, got, &c, (const float *const *)x, cl, K));
    ad_fedavg(want, x, W5, K, dim);
    CHECKF(fp_test_maxerr(got, want, dim) < 1e-6, "fedavg err %g", fp_test_maxerr(got, want, dim));

    CHECK_OK(fp_aggregator_find(&a, "fednova"));
    CHECK(a->secure_ok && a->secure_sums == 1);
    CHECK_OK(fp_agg_aggregate_plain(a, got, &c, (const float *const *)x, cl, K));
    ad_fednova(want, x, W5, tau, K, dim);
    CHECKF(fp_test_maxerr(got, want, dim) < 1e-5, "fednova err %g", fp_test_maxerr(got, want, dim));
    /* equal steps: fednova is fedavg */
    int same[K] = {4, 4, 4, 4, 4};
    clients(cl, NULL, same);
    CHECK_OK(fp_agg_aggregate_plain(a, got, &c, (const float *const *)x, cl, K));
    ad_fedavg(want, x, W5, K, dim);
    CHECK(fp_test_maxerr(got, want, dim) < 1e-5);
    /* more steps than the round allows is an error naming the client */
    int over[K] = {1, 9, 1, 1, 1};
    clients(cl, NULL, over);
    CHECK_ERR(fp_agg_aggregate_plain(a, got, &c, (const float *const *)x, cl, K), FP_EINVAL);
    CHECK(strstr(fp_errmsg(), "bob") != NULL);
    ad_free_rows(x, K);
    free(got);
    free(want);
}

static void test_hetlora(void)
{
    fp_lora_vec_layout l;
    ad_layout(&l, 4);
    size_t dim = l.dim;
    /* entries beyond each client's rank hold garbage: they must be ignored */
    float **x = ad_rows(K, dim, -1, 1);
    float *got = malloc(dim * 4), *want = malloc(dim * 4);
    int rank[K] = {3, 1, 2, 2, 1}; /* nobody trains component 3 */
    fp_agg_client cl[K];
    clients(cl, rank, NULL);
    fp_agg_ctx c = {.dim = dim, .layout = &l};
    const fp_aggregator *a;
    CHECK_OK(fp_aggregator_find(&a, "hetlora"));
    CHECK_OK(fp_agg_aggregate_plain(a, got, &c, (const float *const *)x, cl, K));
    ad_hetlora(want, x, W5, rank, K, &l);
    CHECKF(fp_test_maxerr(got, want, dim) < 1e-6, "hetlora err %g", fp_test_maxerr(got, want, dim));
    /* rank 16: over two column blocks of 1024 and a partial one; the same
     * bits on 1 and 3 threads */
    {
        fp_lora_vec_layout l16;
        ad_layout(&l16, 16);
        size_t d16 = l16.dim;
        CHECKF(d16 > 2 * 1024, "hetlora rank-16 layout: %zu floats, under 3 column blocks", d16);
        float **x16 = ad_rows(K, d16, -1, 1), *one = malloc(d16 * 4), *got16 = malloc(d16 * 4),
              *want16 = malloc(d16 * 4);
        int r16[K] = {16, 3, 9, 12, 1};
        clients(cl, r16, NULL);
        fp_agg_ctx c16 = {.dim = d16, .layout = &l16};
        setenv("FP_AGG_THREADS", "1", 1);
        CHECK_OK(fp_agg_aggregate_plain(a, one, &c16, (const float *const *)x16, cl, K));
        setenv("FP_AGG_THREADS", "3", 1);
        CHECK_OK(fp_agg_aggregate_plain(a, got16, &c16, (const float *const *)x16, cl, K));
        unsetenv("FP_AGG_THREADS");
        CHECK(memcmp(got16, one, d16 * 4) == 0);
        ad_hetlora(want16, x16, W5, r16, K, &l16);
        CHECKF(fp_test_maxerr(one, want16, d16) < 1e-6, "hetlora rank 16 err %g", fp_test_maxerr(one, want16, d16));
        ad_free_rows(x16, K);
        free(one);
        free(got16);
        free(want16);
        fp_lora_vec_layout_free(&l16);
    }
    /* component 3 of the first A is zero; component 0 is everybody's mean */
    CHECK(got[l.slots[0].a_off + 3 * (size_t)l.slots[0].in] == 0.0f);
    /* rank 0 means the full R: then hetlora is fedavg */
    clients(cl, NULL, NULL);
    CHECK_OK(fp_agg_aggregate_plain(a, got, &c, (const float *const *)x, cl, K));
    ad_fedavg(want, x, W5, K, dim);
    CHECK(fp_test_maxerr(got, want, dim) < 1e-6);
    /* no layout: refused, with the reason */
    fp_agg_ctx nol = {.dim = dim};
    CHECK_ERR(fp_agg_check(a, &nol, 0), FP_EUNSUPPORTED);
    CHECK(strstr(fp_errmsg(), "layout") != NULL);
    ad_free_rows(x, K);
    free(got);
    free(want);
    fp_lora_vec_layout_free(&l);
}

static void test_ties(void)
{
    size_t dim = 401;
    float **x = ad_rows(K, dim, -1, 1);
    for (size_t i = 0; i < dim; i += 7) /* some exact ties in magnitude */
        x[1][i] = 0.5f;
    float *got = malloc(dim * 4), *want = malloc(dim * 4);
    fp_agg_client cl[K];
    clients(cl, NULL, NULL);
    fp_agg_opts o;
    fp_agg_opts_default(&o);
    o.ties_keep = 0.3f;
    o.ties_lambda = 1.5f;
    fp_agg_ctx c = {.dim = dim, .opts = &o};
    const fp_aggregator *a;
    CHECK_OK(fp_aggregator_find(&a, "ties"));
    CHECK(a->secure_ok && a->secure_sums == 2);
    CHECK_OK(fp_agg_aggregate_plain(a, got, &c, (const float *const *)x, cl, K));
    ad_ties(want, x, K, dim, 0.3f, 1.5f);
    CHECKF(fp_test_maxerr(got, want, dim) < 1e-6, "ties err %g", fp_test_maxerr(got, want, dim));
    /* TIES differs from fedavg here (it must not be an average in disguise) */
    float *fa = malloc(dim * 4);
    ad_fedavg(fa, x, W5, K, dim);
    CHECK(fp_test_maxerr(got, fa, dim) > 0.1);
    free(fa);
    ad_free_rows(x, K);
    free(got);
    free(want);
}

/* The weighted means run in column blocks on threads (agg_weighted_columns):
 * over several blocks and a partial one, fedavg gives the per-coordinate
 * double sum's bits (client order, (float)(s / W)), and fedavg, fednova and
 * normclip give the same bits on 1 and 3 threads. */
static void test_weighted_columns(void)
{
    size_t dim = 3 * 2048 + 45;
    float **x = ad_rows(K, dim, -1, 1);
    for (size_t i = 0; i < dim; i += 3) { /* 40 x 1e20 and 10 x -4e20 cancel exactly: order shows */
        x[1][i] = 1e20f;
        x[4][i] = -4.0f * x[1][i];
    }
    float *got = malloc(dim * 4), *one = malloc(dim * 4), *want = malloc(dim * 4);
    int tau[K] = {1, 3, 5, 2, 8};
    fp_agg_client cl[K];
    clients(cl, NULL, tau);
    double W = 0;
    for (int k = 0; k < K; k++)
        W += W5[k];
    for (size_t i = 0; i < dim; i++) {
        double s = 0;
        for (int k = 0; k < K; k++)
            s += W5[k] * x[k][i];
        want[i] = (float)(s / W);
    }
    fp_agg_opts o;
    fp_agg_opts_default(&o);
    fp_agg_ctx c = {.dim = dim, .max_steps = 8, .opts = &o};
    static const char *names[] = {"fedavg", "fednova", "normclip"};
    for (int a = 0; a < 3; a++) {
        const fp_aggregator *ag;
        CHECK_OK(fp_aggregator_find(&ag, names[a]));
        setenv("FP_AGG_THREADS", "1", 1);
        CHECK_OK(fp_agg_aggregate_plain(ag, one, &c, (const float *const *)x, cl, K));
        setenv("FP_AGG_THREADS", "3", 1);
        CHECK_OK(fp_agg_aggregate_plain(ag, got, &c, (const float *const *)x, cl, K));
        unsetenv("FP_AGG_THREADS");
        CHECKF(memcmp(got, one, dim * 4) == 0, "%s: 3 threads differ from 1", names[a]);
        if (a == 0)
            CHECKF(memcmp(one, want, dim * 4) == 0, "fedavg: not the per-coordinate sum's bits (err %g)",
                   fp_test_maxerr(one, want, dim));
    }
    ad_free_rows(x, K);
    free(got);
    free(one);
    free(want);
}

/* ties' thresholds (radix selection on the magnitudes' bits) against the
 * oracle's sort, with magnitudes 2^-30..2^30, one client whose values all
 * share their high 16 bits (the threshold is found in the second pass),
 * duplicates and signed zeros; keep 0.4 of 5 (2, not 3), 5% and 100%;
 * several column blocks and a partial one; the oracle's bits, and the
 * same with 1 and 3 threads. */
static void test_ties_wide(void)
{
    static const size_t dims[] = {1, 5, 2 * 4096 + 37};
    static const float keeps[] = {0.4f, 0.05f, 1.0f};
    const fp_aggregator *a;
    CHECK_OK(fp_aggregator_find(&a, "ties"));
    for (int di = 0; di < 3; di++) {
        size_t dim = dims[di];
        float **x = ad_rows(K, dim, -1, 1);
        for (size_t i = 0; i < dim; i++) {
            x[0][i] = (fp_test_u32() & 1 ? -1.0f : 1.0f) * ldexpf(fp_test_uniform(1, 2), (int)(fp_test_u32() % 61) - 30);
            x[2][i] = (i % 3 ? 1.0f : -1.0f) * (1.0f + ldexpf((float)(i % 5000), -23)); /* one high-16 bin */
            if (i % 11 == 0)
                x[3][i] = i % 2 ? 0.0f : -0.0f;
            if (i % 5 == 0)
                x[4][i] = -0.25f;
        }
        float *got = malloc(dim * 4), *one = malloc(dim * 4), *want = malloc(dim * 4);
        fp_agg_client cl[K];
        clients(cl, NULL, NULL);
        for (int ki = 0; ki < 3; ki++) {
            fp_agg_opts o;
            fp_agg_opts_default(&o);
            o.ties_keep = keeps[ki];
            o.ties_lambda = 1.0f;
            fp_agg_ctx c = {.dim = dim, .opts = &o};
            ad_ties(want, x, K, dim, keeps[ki], 1.0f);
            double mx = 0;
            for (size_t i = 0; i < dim; i++)
                mx = fmax(mx, fabs(want[i]));
            setenv("FP_AGG_THREADS", "1", 1);
            CHECK_OK(fp_agg_aggregate_plain(a, one, &c, (const float *const *)x, cl, K));
            setenv("FP_AGG_THREADS", "3", 1);
            CHECK_OK(fp_agg_aggregate_plain(a, got, &c, (const float *const *)x, cl, K));
            unsetenv("FP_AGG_THREADS");
            CHECKF(memcmp(got, one, dim * 4) == 0, "ties dim %zu keep %g: 3 threads differ from 1", dim,
                   (double)keeps[ki]);
            /* the oracle sums the same floats in the same order in double */
            CHECKF(memcmp(one, want, dim * 4) == 0, "ties dim %zu keep %g: not the oracle's bits (err %g, max %g)",
                   dim, (double)keeps[ki], fp_test_maxerr(one, want, dim), mx);
        }
        ad_free_rows(x, K);
        free(got);
        free(one);
        free(want);
    }
}

/* targets: the modules; q, v and down have out <= in, up (20 x 12) out > in,
 * the two sides of the dense path's Gram matrix. */
static void test_flexlora(unsigned targets)
{
    const int R = 4;
    fp_lora_vec_layout l;
    ad_layout_of(&l, R, targets);
    size_t dim = l.dim;
    float *g = malloc(dim * 4), *delta = malloc(dim * 4);
    for (size_t i = 0; i < dim; i++)
        g[i] = fp_test_uniform(-0.5f, 0.5f);
    const fp_aggregator *a;
    CHECK_OK(fp_aggregator_find(&a, "flexlora"));
    fp_agg_ctx c = {.dim = dim, .layout = &l, .global = g};
    fp_agg_client cl[K];

    /* 1. Every client's A (global + update) is the same A0 (truncated to its
     * rank): the weighted mean product has rank <= R and flexlora must
     * reproduce it exactly. m = 12: the factor path on q and down (12 <=
     * min(out, in)), the dense path on v (out 4). */
    int rank1[K] = {4, 2, 1, 3, 2};
    clients(cl, rank1, NULL);
    float **x = ad_rows(K, dim, -0.3f, 0.3f);
    for (size_t s = 0; s < l.n; s++)
        for (int j = 0; j < R; j++)
            for (int64_t i = 0; i < l.slots[s].in; i++) {
                size_t at = l.slots[s].a_off + (size_t)j * (size_t)l.slots[s].in + (size_t)i;
                for (int k = 0; k < K; k++)
                    x[k][at] = x[0][at];
            }
    CHECK_OK(fp_agg_aggregate_plain(a, delta, &c, (const float *const *)x, cl, K));
    for (size_t s = 0; s < l.n; s++) {
        size_t n = (size_t)(l.slots[s].out * l.slots[s].in);
        double *M = malloc(n * sizeof *M), *P = malloc(n * sizeof *P), e = 0, mx = 0;
        ad_flex_product(M, &l.slots[s], R, g, x, W5, rank1, K);
        ad_slot_product(P, &l.slots[s], R, g, delta);
        for (size_t i = 0; i < n; i++) {
            e = fmax(e, fabs(M[i] - P[i]));
            mx = fmax(mx, fabs(M[i]));
        }
        CHECKF(e < 1e-5 * (1 + mx), "flexlora exact case, slot %zu: err %g (max %g)", s, e, mx);
        free(M);
        free(P);
    }
    ad_free_rows(x, K);

    /* 2. General mixed ranks: the result is the best rank-R approximation of
     * the mean product (residual equal to the optimum found independently). */
    int rank2[K] = {4, 4, 3, 2, 1};
    clients(cl, rank2, NULL);
    x = ad_rows(K, dim, -0.5f, 0.5f);
    CHECK_OK(fp_agg_aggregate_plain(a, delta, &c, (const float *const *)x, cl, K));
    for (size_t s = 0; s < l.n; s++) {
        size_t out = (size_t)l.slots[s].out, in = (size_t)l.slots[s].in, n = out * in;
        double *M = malloc(n * sizeof *M), *P = malloc(n * sizeof *P), res = 0, mm = 0;
        ad_flex_product(M, &l.slots[s], R, g, x, W5, rank2, K);
        ad_slot_product(P, &l.slots[s], R, g, delta);
        for (size_t i = 0; i < n; i++) {
            res += (M[i] - P[i]) * (M[i] - P[i]);
            mm += M[i] * M[i];
        }
        res = sqrt(res);
        double best = ad_best_residual(M, out, in, R);
        CHECKF(fabs(res - best) <= 1e-4 * sqrt(mm) + 1e-9, "flexlora slot %zu: residual %g, optimum %g", s, res,
               best);
        if ((size_t)R < (out < in ? out : in))
            CHECKF(res > 1e-3 * sqrt(mm), "slot %zu: residual %g: the case is trivially exact", s, res);
        free(M);
        free(P);
    }
    /* 3. A client of rank 2 truncating the new global gets its best rank-2
     * approximation: components are in descending singular value. */
    {
        const fp_lora_slot *sl = &l.slots[0];
        size_t out = (size_t)sl->out, in = (size_t)sl->in, n = out * in;
        double *M = calloc(n, sizeof *M), r2 = 0;
        ad_slot_product(M, sl, R, g, delta); /* the rank-R global product */
        double best2 = ad_best_residual(M, out, in, 2);
        for (size_t o = 0; o < out; o++)
            for (size_t i = 0; i < in; i++) {
                double s = 0;
                for (int j = 0; j < 2; j++) {
                    size_t bi = sl->b_off + o * (size_t)R + (size_t)j, ai = sl->a_off + (size_t)j * in + i;
                    s += ((double)g[bi] + delta[bi]) * ((double)g[ai] + delta[ai]);
                }
                r2 += (M[o * in + i] - s) * (M[o * in + i] - s);
            }
        CHECKF(fabs(sqrt(r2) - best2) < 1e-4, "rank-2 truncation residual %g, optimum %g", sqrt(r2), best2);
        free(M);
    }
    ad_free_rows(x, K);
    free(g);
    free(delta);
    fp_lora_vec_layout_free(&l);
}

static int cmpf(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

/* want[i]: the mean of ranks lo..hi (ascending) of coordinate i's K values. */
static void ranks_mean(float *want, float **x, size_t dim, int lo, int hi)
{
    float v[K];
    for (size_t i = 0; i < dim; i++) {
        for (int k = 0; k < K; k++)
            v[k] = x[k][i];
        qsort(v, K, sizeof *v, cmpf);
        float s = 0;
        for (int r = lo; r <= hi; r++)
            s += v[r];
        want[i] = s / (float)(hi - lo + 1);
    }
}

/* The robust tests' clients and options: trim 1 of 5 at each end. */
static fp_agg_ctx robust_ctx(fp_agg_client *cl, fp_agg_opts *o, size_t dim)
{
    clients(cl, NULL, NULL);
    fp_agg_opts_default(o);
    o->trim_frac = 0.2f;
    return (fp_agg_ctx){.dim = dim, .opts = o};
}

static void test_robust(void)
{
    size_t dim = 97;
    float **x = ad_rows(K, dim, -1, 1);
    float *got = malloc(dim * 4), *want = malloc(dim * 4);
    fp_agg_client cl[K];
    fp_agg_opts o;
    fp_agg_ctx c = robust_ctx(cl, &o, dim);
    const fp_aggregator *med, *tm, *nc;
    CHECK_OK(fp_aggregator_find(&med, "median"));
    CHECK_OK(fp_aggregator_find(&tm, "trimmed-mean"));
    CHECK_OK(fp_aggregator_find(&nc, "normclip"));
    CHECK(!med->secure_ok && !tm->secure_ok && !nc->secure_ok);
    CHECK_OK(fp_agg_aggregate_plain(med, got, &c, (const float *const *)x, cl, K));
    ranks_mean(want, x, dim, 2, 2);
    CHECK(fp_test_maxerr(got, want, dim) == 0);
    CHECK_OK(fp_agg_aggregate_plain(tm, got, &c, (const float *const *)x, cl, K));
    ranks_mean(want, x, dim, 1, 3);
    CHECK(fp_test_maxerr(got, want, dim) < 1e-6);
    /* normclip: every update scaled to at most the median norm, then fedavg */
    for (size_t i = 0; i < dim; i++)
        x[3][i] *= 40;
    double nr[K], srt[K];
    for (int k = 0; k < K; k++) {
        double s = 0;
        for (size_t i = 0; i < dim; i++)
            s += (double)x[k][i] * x[k][i];
        nr[k] = srt[k] = sqrt(s);
    }
    for (int a = 0; a < K; a++) /* sort srt */
        for (int b = a + 1; b < K; b++)
            if (srt[b] < srt[a]) {
                double t = srt[a];
                srt[a] = srt[b];
                srt[b] = t;
            }
    double W = 0;
    for (int k = 0; k < K; k++)
        W += W5[k];
    for (size_t i = 0; i < dim; i++) {
        double s = 0;
        for (int k = 0; k < K; k++)
            s += W5[k] * (nr[k] > srt[2] ? srt[2] / nr[k] : 1.0) * x[k][i];
        want[i] = (float)(s / W);
    }
    CHECK_OK(fp_agg_aggregate_plain(nc, got, &c, (const float *const *)x, cl, K));
    CHECK(fp_test_maxerr(got, want, dim) < 1e-6);
    CHECK(fp_agg_reject_k(nc, &o) == 10.0f && fp_agg_reject_k(med, &o) == 0.0f);
    ad_free_rows(x, K);
    free(got);
    free(want);
}

/* Median and trimmed mean split the coordinates into 4096-column blocks over
 * threads (FP_AGG_THREADS; by default only past 2^20 values): every thread
 * count gives the same bits, and those are the sorted per-coordinate ranks
 * (partial last block, more threads than blocks included). */
static void test_robust_threads(void)
{
    size_t dim = 3 * 4096 + 333;
    float **x = ad_rows(K, dim, -1, 1);
    float *got = malloc(dim * 4), *one = malloc(dim * 4), *want = malloc(dim * 4);
    fp_agg_client cl[K];
    fp_agg_opts o;
    fp_agg_ctx c = robust_ctx(cl, &o, dim);
    const fp_aggregator *med, *tm;
    CHECK_OK(fp_aggregator_find(&med, "median"));
    CHECK_OK(fp_aggregator_find(&tm, "trimmed-mean"));
    ranks_mean(want, x, dim, 2, 2);
    static const char *threads[] = {"1", "3", "16"};
    for (int a = 0; a < 2; a++) {
        const fp_aggregator *ag = a ? tm : med;
        for (int t = 0; t < 3; t++) {
            setenv("FP_AGG_THREADS", threads[t], 1);
            CHECK_OK(fp_agg_aggregate_plain(ag, t ? got : one, &c, (const float *const *)x, cl, K));
            if (t)
                CHECKF(memcmp(got, one, dim * 4) == 0, "%s: %s threads differ from one", ag->name, threads[t]);
        }
        if (!a)
            CHECK(fp_test_maxerr(one, want, dim) == 0);
    }
    ranks_mean(want, x, dim, 1, 3);
    CHECK(fp_test_maxerr(one, want, dim) < 1e-6);
    unsetenv("FP_AGG_THREADS");
    ad_free_rows(x, K);
    free(got);
    free(one);
    free(want);
}

/* The server's median and trimmed mean (a sorting network across columns,
 * src/fed/order_net.c) give the kernel library's C reference's bits for any
 * client count: ties, signed zeros, magnitudes 2^-40..2^40, a partial last
 * group of columns, several column blocks; a NaN or an infinity (which the
 * screen normally refuses first) too. Past 1024 clients the server runs the
 * reference itself. */
static void test_robust_network(void)
{
    static const size_t counts[] = {1, 2, 3, 4, 7, 16, 33, 64, 100, 129, 1025};
    static const float ties[] = {-1.0f, -0.0f, 0.0f, 1.0f, 2.0f};
    const fp_aggregator *med, *tm;
    CHECK_OK(fp_aggregator_find(&med, "median"));
    CHECK_OK(fp_aggregator_find(&tm, "trimmed-mean"));
    for (size_t ci = 0; ci < sizeof counts / sizeof counts[0]; ci++) {
        size_t nk = counts[ci], dim = nk <= 33 ? 2 * 4096 + 37 : nk <= 129 ? 1037 : 37;
        float **x = ad_rows(nk, dim, -1, 1), *X = malloc(nk * dim * 4);
        float *got = malloc(dim * 4), *want = malloc(dim * 4);
        fp_agg_client *cl = calloc(nk, sizeof *cl);
        for (size_t k = 0; k < nk; k++) {
            cl[k].weight = 1;
            for (size_t i = 0; i < dim; i++) {
                if (i % 4 == 1)
                    x[k][i] = ties[fp_test_u32() % 5];
                else if (i % 4 == 2)
                    x[k][i] = (fp_test_u32() & 1 ? -1.0f : 1.0f) * ldexpf(1.0f, (int)(fp_test_u32() % 81) - 40);
                X[k * dim + i] = x[k][i];
            }
        }
        for (int special = 0; special < 2; special++) {
            if (special) { /* a NaN in each of 32 columns (a network would place it elsewhere), infinities */
                for (size_t i = 0; i < 32; i++)
                    x[i * 5 % nk][i + 5] = X[(i * 5 % nk) * dim + i + 5] = NAN;
                x[0][dim - 3] = X[dim - 3] = INFINITY;
                x[nk / 2][dim - 2] = X[(nk / 2) * dim + dim - 2] = -INFINITY;
            }
            fp_agg_opts o;
            fp_agg_opts_default(&o);
            fp_agg_ctx c = {.dim = dim, .opts = &o};
            /* the baseline SIMD path too (x86-64 with AVX takes the wide one by default) */
            setenv("FP_AGG_SIMD", "base", 1);
            CHECK_OK(fp_agg_aggregate_plain(med, got, &c, (const float *const *)x, cl, nk));
            unsetenv("FP_AGG_SIMD");
            CHECK_OK(fp_agg_median_ref(want, X, (int64_t)nk, (int64_t)dim));
            CHECKF(memcmp(got, want, dim * 4) == 0, "median (baseline SIMD), %zu clients%s: not the reference's bits",
                   nk, special ? " with NaN and Inf" : "");
            CHECK_OK(fp_agg_aggregate_plain(med, got, &c, (const float *const *)x, cl, nk));
            CHECKF(memcmp(got, want, dim * 4) == 0, "median, %zu clients%s: not the reference's bits", nk,
                   special ? " with NaN and Inf" : "");
            static const float fracs[] = {0.1f, 0.3f};
            for (int f = 0; f < 2; f++) {
                o.trim_frac = fracs[f];
                uint32_t b = (uint32_t)floor((double)fracs[f] * (double)nk);
                if (2 * (size_t)b >= nk)
                    b = (uint32_t)((nk - 1) / 2);
                CHECK_OK(fp_agg_aggregate_plain(tm, got, &c, (const float *const *)x, cl, nk));
                CHECK_OK(fp_agg_trimmed_mean_ref(want, X, (int64_t)nk, (int64_t)dim, b));
                CHECKF(memcmp(got, want, dim * 4) == 0, "trimmed mean %g, %zu clients%s: not the reference's bits",
                       (double)fracs[f], nk, special ? " with NaN and Inf" : "");
            }
        }
        ad_free_rows(x, nk);
        free(X);
        free(got);
        free(want);
        free(cl);
    }
}

static void test_screen(void)
{
    size_t dim = 50;
    float **x = ad_rows(K, dim, -1, 1);
    fp_agg_client cl[K];
    clients(cl, NULL, NULL);
    fp_agg_ctx c = {.dim = dim};
    x[1][7] = NAN;
    for (size_t i = 0; i < dim; i++)
        x[4][i] *= 1000; /* a norm far above the cohort's */
    size_t lens[K] = {dim, dim, dim, dim - 1, dim}; /* dave's is short */
    uint8_t keep[K];
    size_t kept = 0;
    char refused[1024] = "";
    CHECK_OK(fp_agg_screen(keep, &kept, refused, sizeof refused, &c, (const float *const *)x, lens, cl, K, 10));
    CHECK(kept == 2 && keep[0] && !keep[1] && keep[2] && !keep[3] && !keep[4]);
    CHECKF(strstr(refused, "bob: non-finite value (NaN) at element 7") &&
               strstr(refused, "dave: wrong shape: 49 elements, expected 50") && strstr(refused, "erin: norm"),
           "refused list: %s", refused);
    /* the rows are scanned on worker threads: 3 give the same verdicts */
    {
        uint8_t keep3[K];
        size_t kept3 = 0;
        char refused3[1024] = "";
        setenv("FP_AGG_THREADS", "3", 1);
        CHECK_OK(fp_agg_screen(keep3, &kept3, refused3, sizeof refused3, &c, (const float *const *)x, lens, cl, K, 10));
        unsetenv("FP_AGG_THREADS");
        CHECK(kept3 == kept && memcmp(keep3, keep, sizeof keep) == 0 && strcmp(refused3, refused) == 0);
    }
    /* without the norm rule the big update stays; an Inf is refused */
    x[2][49] = -INFINITY;
    refused[0] = '\0';
    CHECK_OK(fp_agg_screen(keep, &kept, refused, sizeof refused, &c, (const float *const *)x, NULL, cl, K, 0));
    CHECK(kept == 3 && keep[0] && !keep[1] && !keep[2] && keep[3] && keep[4]);
    CHECKF(strstr(refused, "carol: non-finite value (Inf) at element 49") != NULL, "refused: %s", refused);
    ad_free_rows(x, K);
}

static void test_dare(void)
{
    size_t dim = 20000;
    uint8_t *m1 = malloc(dim), *m2 = malloc(dim), *m3 = malloc(dim);
    CHECK_OK(fp_agg_dare_mask(m1, dim, 0.3f, 77, 5));
    CHECK_OK(fp_agg_dare_mask(m2, dim, 0.3f, 77, 5));
    CHECK_OK(fp_agg_dare_mask(m3, dim, 0.3f, 77, 6));
    CHECK(!memcmp(m1, m2, dim) && memcmp(m1, m3, dim));
    size_t kept = 0;
    for (size_t i = 0; i < dim; i++)
        kept += m1[i];
    double sd = sqrt(dim * 0.3 * 0.7);
    CHECKF(fabs((double)kept - 0.7 * dim) < 4 * sd, "dare kept %zu of %zu at p 0.3", kept, dim);
    CHECK_ERR(fp_agg_dare_mask(m1, dim, 1.0f, 1, 1), FP_EINVAL);
    free(m1);
    free(m2);
    free(m3);

    /* dare+fedavg = fedavg of each client's kept entries scaled by 1/(1-p) */
    dim = 300;
    float **x = ad_rows(K, dim, -1, 1), **d = ad_rows(K, dim, 0, 0);
    fp_agg_client cl[K];
    clients(cl, NULL, NULL);
    fp_agg_opts o;
    fp_agg_opts_default(&o);
    o.dare_p = 0.4f;
    fp_agg_ctx c = {.dim = dim, .opts = &o, .seed = 991};
    uint8_t *mk = malloc(dim);
    for (int k = 0; k < K; k++) {
        CHECK_OK(fp_agg_dare_mask(mk, dim, 0.4f, 991, cl[k].id));
        for (size_t i = 0; i < dim; i++)
            d[k][i] = mk[i] ? x[k][i] / 0.6f : 0.0f;
    }
    float *got = malloc(dim * 4), *want = malloc(dim * 4);
    const fp_aggregator *a;
    CHECK_OK(fp_aggregator_find(&a, "dare+fedavg"));
    CHECK_OK(fp_agg_aggregate_plain(a, got, &c, (const float *const *)x, cl, K));
    ad_fedavg(want, d, W5, K, dim);
    CHECK(fp_test_maxerr(got, want, dim) < 1e-5);
    CHECK_OK(fp_aggregator_find(&a, "dare+ties"));
    CHECK(a->secure_ok && a->secure_sums == 2);
    CHECK_OK(fp_agg_aggregate_plain(a, got, &c, (const float *const *)x, cl, K));
    ad_ties(want, d, K, dim, o.ties_keep, o.ties_lambda);
    CHECK(fp_test_maxerr(got, want, dim) < 1e-5);
    free(mk);
    free(got);
    free(want);
    ad_free_rows(x, K);
    ad_free_rows(d, K);
}

/* dare+fedavg and dare+fednova drop entries inside the weighted sum, block
 * by block on the sum's threads: the same bits as their base over copies of
 * the dropped updates (the copy path, FP_AGG_DARE_COPY=1, and copies made
 * here from fp_agg_dare_mask), whatever the thread count; over several column
 * blocks and an odd tail. */
static void test_dare_fused(void)
{
    size_t dim = 3 * 2048 + 37;
    float **x = ad_rows(K, dim, -1, 1), **d = ad_rows(K, dim, 0, 0);
    int steps[K] = {4, 9, 1, 6, 3};
    fp_agg_client cl[K];
    clients(cl, NULL, steps);
    fp_agg_opts o;
    fp_agg_opts_default(&o);
    o.dare_p = 0.35f;
    fp_agg_ctx c = {.dim = dim, .opts = &o, .seed = 0x5eedull, .max_steps = 10};
    uint8_t *mk = malloc(dim);
    float scale = 1.0f / (1.0f - o.dare_p);
    for (int k = 0; k < K; k++) {
        CHECK_OK(fp_agg_dare_mask(mk, dim, o.dare_p, c.seed, cl[k].id));
        for (size_t i = 0; i < dim; i++)
            d[k][i] = mk[i] ? x[k][i] * scale : 0.0f;
    }
    float *fused1 = malloc(dim * 4), *fused3 = malloc(dim * 4), *copy = malloc(dim * 4), *want = malloc(dim * 4);
    static const char *const names[2] = {"dare+fedavg", "dare+fednova"};
    static const char *const bases[2] = {"fedavg", "fednova"};
    for (int a = 0; a < 2; a++) {
        const fp_aggregator *ag, *base;
        CHECK_OK(fp_aggregator_find(&ag, names[a]));
        CHECK_OK(fp_aggregator_find(&base, bases[a]));
        setenv("FP_AGG_THREADS", "1", 1);
        CHECK_OK(fp_agg_aggregate_plain(ag, fused1, &c, (const float *const *)x, cl, K));
        setenv("FP_AGG_THREADS", "3", 1);
        CHECK_OK(fp_agg_aggregate_plain(ag, fused3, &c, (const float *const *)x, cl, K));
        setenv("FP_AGG_DARE_COPY", "1", 1);
        CHECK_OK(fp_agg_aggregate_plain(ag, copy, &c, (const float *const *)x, cl, K));
        unsetenv("FP_AGG_DARE_COPY");
        unsetenv("FP_AGG_THREADS");
        CHECK_OK(fp_agg_aggregate_plain(base, want, &c, (const float *const *)d, cl, K));
        CHECKF(memcmp(fused1, fused3, dim * 4) == 0, "%s: 3 threads differ from 1", names[a]);
        CHECKF(memcmp(fused1, copy, dim * 4) == 0, "%s: fused differs from the copy path (err %g)", names[a],
               fp_test_maxerr(fused1, copy, dim));
        CHECKF(memcmp(fused1, want, dim * 4) == 0, "%s: not %s over the dropped updates (err %g)", names[a],
               bases[a], fp_test_maxerr(fused1, want, dim));
        /* and the drop did something: not the base over the updates themselves */
        CHECK_OK(fp_agg_aggregate_plain(base, want, &c, (const float *const *)x, cl, K));
        CHECKF(fp_test_maxerr(fused1, want, dim) > 1e-3, "%s: nothing dropped", names[a]);
    }
    /* a bad drop probability is refused by name on the fused path too */
    o.dare_p = 1.0f;
    const fp_aggregator *ag;
    CHECK_OK(fp_aggregator_find(&ag, "dare+fedavg"));
    CHECK_ERR(fp_agg_aggregate_plain(ag, fused1, &c, (const float *const *)x, cl, K), FP_EINVAL);
    CHECKF(strstr(fp_errmsg(), "drop probability") != NULL, "error: %s", fp_errmsg());
    free(mk);
    free(fused1);
    free(fused3);
    free(copy);
    free(want);
    ad_free_rows(x, K);
    ad_free_rows(d, K);
}

static void test_cluster(void)
{
    /* two tasks: clients 0, 2, 4 move along e1-ish, 1, 3 along e2-ish */
    size_t dim = 200;
    float **x = ad_rows(K, dim, -0.1f, 0.1f);
    for (int k = 0; k < K; k++)
        for (size_t i = 0; i < dim / 2; i++)
            x[k][(k % 2) * (dim / 2) + i] += 1.0f;
    uint32_t lab[K], n = 0;
    CHECK_OK(fp_agg_cluster_assign(lab, &n, (const float *const *)x, K, dim, 0.5f, 0));
    CHECK(n == 2 && lab[0] == 0 && lab[2] == 0 && lab[4] == 0 && lab[1] == 1 && lab[3] == 1);
    CHECK_OK(fp_agg_cluster_assign(lab, &n, (const float *const *)x, K, dim, 0.5f, 1));
    CHECK(n == 1);
    CHECK_OK(fp_agg_cluster_assign(lab, &n, (const float *const *)x, K, dim, 1.0f, 0));
    CHECK(n == K);
    /* cluster:ties = ties across the two clusters' ties */
    fp_agg_client cl[K];
    clients(cl, NULL, NULL);
    fp_agg_opts o;
    fp_agg_opts_default(&o);
    fp_agg_ctx c = {.dim = dim, .opts = &o};
    float *got = malloc(dim * 4), *want = malloc(dim * 4);
    float *g0[3] = {x[0], x[2], x[4]}, *g1[2] = {x[1], x[3]};
    float *cd[2] = {malloc(dim * 4), malloc(dim * 4)};
    ad_ties(cd[0], g0, 3, dim, o.ties_keep, o.ties_lambda);
    ad_ties(cd[1], g1, 2, dim, o.ties_keep, o.ties_lambda);
    ad_ties(want, cd, 2, dim, o.ties_keep, o.ties_lambda);
    const fp_aggregator *a;
    CHECK_OK(fp_aggregator_find(&a, "cluster:ties"));
    CHECK(!a->secure_ok);
    CHECK_OK(fp_agg_aggregate_plain(a, got, &c, (const float *const *)x, cl, K));
    CHECK(fp_test_maxerr(got, want, dim) < 1e-6);
    /* cluster:fedavg = fedavg of the cluster means weighted by cluster weight = fedavg */
    CHECK_OK(fp_aggregator_find(&a, "cluster:fedavg"));
    CHECK_OK(fp_agg_aggregate_plain(a, got, &c, (const float *const *)x, cl, K));
    ad_fedavg(want, x, W5, K, dim);
    CHECK(fp_test_maxerr(got, want, dim) < 1e-5);
    free(cd[0]);
    free(cd[1]);
    free(got);
    free(want);
    ad_free_rows(x, K);
}

/* The cosines behind the clustering, over several column blocks and a
 * partial one, both Gram paths (OpenBLAS's dsyrk where built, plain loops with
 * FP_AGG_SIMD=base): two clients merge at a threshold 1e-6 under their
 * cosine, computed here pair by pair in double, and stay apart 1e-6 over it
 * (a block missed or counted twice moves the cosine by far more). */
static void test_cluster_gram(void)
{
    size_t dim = 3 * 2048 + 77;
    float **x = ad_rows(3, dim, -1, 1);
    for (size_t i = 0; i < dim; i++)
        x[1][i] = x[0][i] + fp_test_uniform(-1, 1) * (i < 2048 ? 0.5f : 1.5f);
    double d = 0, n0 = 0, n1 = 0;
    for (size_t i = 0; i < dim; i++) {
        d += (double)x[0][i] * x[1][i];
        n0 += (double)x[0][i] * x[0][i];
        n1 += (double)x[1][i] * x[1][i];
    }
    double cs = d / sqrt(n0 * n1);
    for (int base = 0; base < 2; base++) {
        if (base)
            setenv("FP_AGG_SIMD", "base", 1);
        uint32_t lab[2], n = 0;
        CHECK_OK(fp_agg_cluster_assign(lab, &n, (const float *const *)x, 2, dim, (float)(cs - 1e-6), 0));
        CHECKF(n == 1, "%s Gram: cosine %.9f, threshold just under it: %u clusters", base ? "plain" : "default", cs, n);
        CHECK_OK(fp_agg_cluster_assign(lab, &n, (const float *const *)x, 2, dim, (float)(cs + 1e-6), 0));
        CHECKF(n == 2, "%s Gram: cosine %.9f, threshold just over it: %u clusters", base ? "plain" : "default", cs, n);
        unsetenv("FP_AGG_SIMD");
    }
    ad_free_rows(x, 3);
}

static void test_errors(void)
{
    const fp_aggregator *a;
    /* which ones differential privacy may be calibrated for */
    static const char *dp_yes[] = {"fedavg", "fednova", "hetlora"};
    static const char *dp_no[] = {"flexlora", "ties", "dare+fedavg", "dare+ties", "median", "cluster:fedavg"};
    for (size_t i = 0; i < 3; i++) {
        CHECK_OK(fp_aggregator_find(&a, dp_yes[i]));
        CHECK(a->dp_ok && a->secure_ok && a->secure_sums == 1);
    }
    for (size_t i = 0; i < 6; i++) {
        CHECK_OK(fp_aggregator_find(&a, dp_no[i]));
        CHECK(!a->dp_ok);
    }
    CHECK_ERR(fp_aggregator_find(&a, "krum"), FP_ENOTFOUND);
    CHECK(strstr(fp_errmsg(), "flexlora") != NULL);
    CHECK_ERR(fp_aggregator_find(&a, "dare+median"), FP_ENOTFOUND);
    CHECK_OK(fp_aggregator_find(&a, "median"));
    fp_agg_ctx c = {.dim = 4, .clip = 1};
    CHECK_ERR(fp_agg_check(a, &c, 1), FP_EUNSUPPORTED);
    fp_agg_opts o;
    fp_agg_opts_default(&o);
    o.ties_keep = 0;
    c.opts = &o;
    CHECK_OK(fp_aggregator_find(&a, "ties"));
    CHECK_ERR(fp_agg_check(a, &c, 0), FP_EINVAL);
    /* secure flexlora on a layout whose products dwarf the vector is refused */
    fp_lora_vec_layout l;
    fp_llama_config big = AD_CFG;
    big.hidden = 256;
    big.heads = 4;
    big.kv_heads = 4;
    big.head_dim = 64;
    big.intermediate = 512;
    fp_lora_config lc = {.rank = 1, .alpha = 1, .targets = FP_LORA_Q};
    CHECK_OK(fp_lora_vec_layout_build(&l, &big, &lc));
    fp_agg_ctx cf = {.dim = l.dim, .layout = &l, .clip = 1};
    CHECK_OK(fp_aggregator_find(&a, "flexlora"));
    CHECK_OK(fp_agg_check(a, &cf, 0));
    CHECK_ERR(fp_agg_check(a, &cf, 1), FP_EUNSUPPORTED);
    CHECK(strstr(fp_errmsg(), "product") != NULL);
    fp_lora_vec_layout_free(&l);
    /* options: strict parse */
    cJSON *j = cJSON_Parse("{\"ties_keep\":0.5,\"dare_p\":0.1,\"clusters\":3}");
    CHECK_OK(fp_agg_opts_parse(&o, j));
    CHECK(o.ties_keep == 0.5f && o.dare_p == 0.1f && o.clusters == 3 && o.ties_lambda == 1.0f);
    cJSON_Delete(j);
    const char *bad[] = {"{\"ties_kep\":0.5}", "{\"dare_p\":1}", "{\"trim_frac\":0.5}", "{\"clusters\":-1}",
                         "{\"ties_lambda\":\"x\"}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        j = cJSON_Parse(bad[i]);
        int rc = fp_agg_opts_parse(&o, j);
        CHECKF(rc == FP_EFORMAT, "options %s: %d", bad[i], rc);
        cJSON_Delete(j);
    }
    /* server.json carries them */
    fp_fed_server_config sc;
    const char *js = "{\"aggregator\":\"dare+ties\",\"aggregator_options\":{\"ties_keep\":0.1}}";
    CHECK_OK(fp_fed_server_config_parse(&sc, js, strlen(js), "/b"));
    CHECK(sc.agg_opts.ties_keep == 0.1f && !strcmp(sc.aggregator, "dare+ties"));
    js = "{\"aggregator_options\":{\"dare_p\":2}}";
    CHECK_ERR(fp_fed_server_config_parse(&sc, js, strlen(js), "/b"), FP_EFORMAT);
}

int main(void)
{
    fp_test_seed(20261126);
    test_fedavg_fednova();
    test_hetlora();
    test_ties();
    test_weighted_columns();
    test_ties_wide();
    for (int base = 0; base < 2; base++) {
        if (base) { /* the product and the Gram matrix by plain loops, not OpenBLAS */
            setenv("FP_AGG_SIMD", "base", 1);
            printf("flexlora again with FP_AGG_SIMD=base\n");
        }
        test_flexlora(FP_LORA_Q | FP_LORA_V | FP_LORA_DOWN);
        test_flexlora(FP_LORA_UP | FP_LORA_V);
        unsetenv("FP_AGG_SIMD");
    }
    test_robust();
    test_robust_threads();
    test_robust_network();
    test_screen();
    test_dare();
    test_dare_fused();
    test_cluster();
    test_cluster_gram();
    test_errors();
    return fp_test_report("test_aggregators");
}
