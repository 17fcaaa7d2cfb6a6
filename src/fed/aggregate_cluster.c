/* cluster:<base> (after Floe's task clustering): clients whose updates point
 * the same way probably share a task or domain, and merging across tasks is
 * where interference comes from. Clients are grouped by average-linkage
 * agglomeration on the cosine similarity of their updates: the two most
 * similar groups merge while their mean pairwise similarity is at least
 * opts.cluster_threshold, or while there are more than opts.clusters groups
 * (when set). <base> merges within each cluster; then the clusters, each a
 * pseudo-client weighted by its members' total weight (rank: its largest),
 * are merged by <base> again (by the base of a dare+ composite: dropping
 * twice would be wrong). Plain only: it needs every update. The grouping is
 * logged. */
#include <stdio.h>
#include <string.h>

#include "agg_internal.h"
#include "fed_internal.h"

/* The Gram matrix G = X X^T of the updates, in double, accumulated over
 * column blocks: each block of the K rows is converted to double once (K x
 * GRAM_BLOCK, a few MiB) and every pair's dot product is taken from it while
 * it is in cache. Why blocks: pair by pair, each of the K^2/2 dot products
 * streamed both rows from memory (100 clients x 1M floats: 40 GB read, 8.5 s
 * of cluster:fedavg's 9.1 s in fp bench fed --aggregators; blocked: 2.4 s on
 * one core, 1.2 s with OpenBLAS). With OpenBLAS a block is one dsyrk;
 * without it (or with FP_AGG_SIMD=base), the upper triangle by plain loops. */
#ifdef FP_HAVE_OPENBLAS
#include <cblas.h>
#endif
#define GRAM_BLOCK 2048

static void gram_block(double *G, const double *Xb, size_t K, size_t n, int blas)
{
#ifdef FP_HAVE_OPENBLAS
    if (blas) {
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, (blasint)K, (blasint)n, 1.0, Xb, (blasint)n, 1.0, G,
                    (blasint)K);
        return;
    }
#endif
    for (size_t a = 0; a < K; a++)
        for (size_t b = a; b < K; b++) {
            const double *u = Xb + a * n, *v = Xb + b * n;
            double s0 = 0, s1 = 0, s2 = 0, s3 = 0; /* four chains: the adds pipeline */
            size_t i = 0;
            for (; i + 4 <= n; i += 4) {
                s0 += u[i] * v[i];
                s1 += u[i + 1] * v[i + 1];
                s2 += u[i + 2] * v[i + 2];
                s3 += u[i + 3] * v[i + 3];
            }
            for (; i < n; i++)
                s0 += u[i] * v[i];
            G[a * K + b] += (s0 + s1) + (s2 + s3);
        }
}

/* Cosine similarity matrix S[K][K] (zero updates: similarity 0). */
static int cosines(double *S, const float *const *x, size_t K, size_t dim)
{
    size_t bw = dim < GRAM_BLOCK ? (dim ? dim : 1) : GRAM_BLOCK;
    double *Xb = malloc(K * bw * sizeof *Xb);
    if (!Xb)
        return fp_seterr(FP_ENOMEM, "cluster: out of memory for %zu x %zu", K, bw);
    memset(S, 0, K * K * sizeof *S); /* the Gram matrix's upper triangle first */
    int blas = !agg_baseline_paths(); /* asked once, not per block */
    for (size_t i0 = 0; i0 < dim; i0 += bw) {
        size_t n = dim - i0 < bw ? dim - i0 : bw;
        for (size_t k = 0; k < K; k++)
            for (size_t i = 0; i < n; i++)
                Xb[k * n + i] = x[k][i0 + i];
        gram_block(S, Xb, K, n, blas);
    }
    free(Xb);
    for (size_t a = 0; a < K; a++)
        for (size_t b = a + 1; b < K; b++) {
            double na = sqrt(S[a * K + a]), nb = sqrt(S[b * K + b]);
            S[a * K + b] = S[b * K + a] = na > 0 && nb > 0 ? S[a * K + b] / (na * nb) : 0;
        }
    for (size_t a = 0; a < K; a++)
        S[a * K + a] = 1;
    return 0;
}

int fp_agg_cluster_assign(uint32_t *label, uint32_t *n_clusters, const float *const *x, size_t K, size_t dim,
                          float threshold, uint32_t max_clusters)
{
    if (!label || !n_clusters || !x || K == 0)
        return fp_seterr(FP_EINVAL, "cluster: NULL argument or no clients");
    double *S = malloc(K * K * sizeof *S);
    size_t *size = malloc(K * sizeof *size);
    int rc = S && size ? cosines(S, x, K, dim) : fp_seterr(FP_ENOMEM, "cluster: out of memory");
    /* label[k]: group of client k (group ids are client indices of a member) */
    for (size_t k = 0; k < K; k++) {
        label[k] = (uint32_t)k;
        if (size)
            size[k] = 1;
    }
    size_t groups = K;
    /* S becomes the mean linkage between groups (rows/columns of live groups):
     * merging h into g, S(g, x) = (|g| S(g, x) + |h| S(h, x)) / (|g| + |h|)
     * (Lance-Williams), O(K) per merge instead of rescanning the members. */
    while (!rc && groups > 1) {
        double best = -2;
        size_t bg = 0, bh = 0;
        for (size_t g = 0; g < K; g++) {
            if (!size[g])
                continue;
            for (size_t h = g + 1; h < K; h++)
                if (size[h] && S[g * K + h] > best) {
                    best = S[g * K + h];
                    bg = g;
                    bh = h;
                }
        }
        int must = max_clusters > 0 && groups > max_clusters;
        if (!must && best < threshold)
            break;
        double ng = (double)size[bg], nh = (double)size[bh];
        for (size_t o = 0; o < K; o++)
            if (size[o] && o != bg && o != bh)
                S[bg * K + o] = S[o * K + bg] = (ng * S[bg * K + o] + nh * S[bh * K + o]) / (ng + nh);
        for (size_t a = 0; a < K; a++)
            if (label[a] == bh)
                label[a] = (uint32_t)bg;
        size[bg] += size[bh];
        size[bh] = 0;
        groups--;
    }
    /* renumber 0..groups-1 in order of first appearance */
    uint32_t next = 0;
    for (size_t k = 0; !rc && k < K; k++) {
        uint32_t g = label[k];
        if (g >= K) /* already renumbered (offset by K) */
            continue;
        for (size_t j = k; j < K; j++)
            if (label[j] == g)
                label[j] = (uint32_t)K + next;
        next++;
    }
    for (size_t k = 0; !rc && k < K; k++)
        label[k] -= (uint32_t)K;
    if (!rc)
        *n_clusters = next;
    free(S);
    free(size);
    return rc;
}

int agg_cluster_plain(const fp_aggregator *self, float *delta, const fp_agg_ctx *c, const float *const *x,
                      const fp_agg_client *cl, size_t K)
{
    const fp_agg_opts *o = agg_opts(c);
    uint32_t *label = malloc(K * sizeof *label), nc = 0;
    const float **rows = malloc(K * sizeof *rows);
    fp_agg_client *sub = malloc(K * sizeof *sub), *pc = malloc(K * sizeof *pc);
    float **cd = calloc(K, sizeof *cd);
    int rc = label && rows && sub && pc && cd ? 0 : fp_seterr(FP_ENOMEM, "cluster: out of memory");
    if (!rc)
        rc = fp_agg_cluster_assign(label, &nc, x, K, c->dim, o->cluster_threshold, o->clusters);
    char line[1024] = "";
    for (uint32_t g = 0; !rc && g < nc; g++) {
        size_t n = 0;
        double w = 0;
        int r = 0;
        size_t len = strlen(line);
        snprintf(line + len, sizeof line - len, "%s{", g ? " " : "");
        for (size_t k = 0; k < K; k++)
            if (label[k] == g) {
                rows[n] = x[k];
                sub[n++] = cl[k];
                w += cl[k].weight;
                r = cl[k].rank > r ? cl[k].rank : r;
                len = strlen(line);
                snprintf(line + len, sizeof line - len, "%s%s", n > 1 ? "," : "", cl[k].name ? cl[k].name : "?");
            }
        len = strlen(line);
        snprintf(line + len, sizeof line - len, "}");
        cd[g] = malloc(c->dim * sizeof **cd + 1);
        rc = cd[g] ? fp_agg_aggregate_plain(self->base, cd[g], c, rows, sub, n)
                   : fp_seterr(FP_ENOMEM, "cluster: out of memory");
        memset(&pc[g], 0, sizeof pc[g]);
        pc[g].weight = w;
        pc[g].rank = r;
        pc[g].steps = 1;
        pc[g].id = g;
        pc[g].name = "cluster";
    }
    if (!rc)
        fed_log("aggregate %s: %u clusters at cosine >= %g: %s\n", self->name, nc, (double)o->cluster_threshold,
                line);
    if (!rc && nc == 1) {
        memcpy(delta, cd[0], c->dim * sizeof *delta);
    } else if (!rc) {
        const fp_aggregator *across = self->base->base ? self->base->base : self->base;
        fp_agg_ctx c2 = *c;
        c2.max_steps = 1;
        rc = fp_agg_aggregate_plain(across, delta, &c2, (const float *const *)cd, pc, nc);
    }
    for (size_t g = 0; cd && g < K; g++)
        free(cd[g]);
    free(cd);
    free(label);
    free(rows);
    free(sub);
    free(pc);
    return rc;
}
