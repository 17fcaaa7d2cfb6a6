/* flexlora (Bai et al. 2024): mixed LoRA ranks aggregated in weight space.
 * Client k's adapter is its rank-r_k truncation of (global + update); per
 * module its product is dW_k = B_k A_k (out x in; the scale alpha/R is the
 * same for every client, lora_vec.h). The server averages the products with
 * the sample weights, M = sum_k p_k dW_k, and takes the truncated SVD back to
 * the layout's rank R: B' = U_R S_R^(1/2), A' = S_R^(1/2) V_R^T, components in
 * descending singular value, so a client of rank r < R that truncates to its
 * first r components gets the best rank-r approximation of M. The delta is
 * the new factors minus the global's.
 *
 * Without forming M when it is cheaper: M = Bc Ac with Bc = [sqrt(p_k) B_k]
 * (out x m) and Ac = [sqrt(p_k) A_k] (m x in), m = sum_k r_k. When m <=
 * min(out, in): QR of Bc and Ac^T (Bc = Qb Rb, Ac^T = Qa Ra), SVD of the small
 * Rb Ra^T = U S V^T, and M = (Qb U) S (Qa V)^T. Otherwise M is formed (out x in;
 * the product by OpenBLAS's dgemm where the build has it) and its top R
 * components come from its smaller side's Gram matrix (svd_dense). LAPACKE
 * (Debian liblapacke-dev), double precision.
 *
 * Secure: one sum of [w_k clip(vec(dW_k)) for every module, w_k clip]; the
 * server learns the weighted sum of the full products (what the average
 * reveals) and their total weight, nothing per client; the SVD runs on the
 * sum. The products are sum_s out_s * in_s floats per client, far more than
 * the adapter: fp_agg_check refuses secure flexlora when that exceeds
 * FLEX_SECURE_MAX_RATIO times the vector (say so, rather than send gigabytes),
 * and clip must bound the products' entries, not the factors'. */
#include <string.h>

#include <lapacke.h>
#ifdef FP_HAVE_OPENBLAS
#include <cblas.h>
#endif

#include "agg_internal.h"

#define FLEX_SECURE_MAX_RATIO 64

/* C (rows x cols) = A (rows x k) times B (k x cols), or times B^T when B is
 * cols x k (tb), all row-major: OpenBLAS's dgemm where the build has it,
 * plain loops without it or with FP_AGG_SIMD=base. */
static void dmm(double *C, const double *A, const double *B, size_t rows, size_t cols, size_t k, int tb)
{
#ifdef FP_HAVE_OPENBLAS
    if (!agg_baseline_paths()) {
        cblas_dgemm(CblasRowMajor, CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (blasint)rows, (blasint)cols,
                    (blasint)k, 1.0, A, (blasint)k, B, (blasint)(tb ? k : cols), 0.0, C, (blasint)cols);
        return;
    }
#endif
    for (size_t i = 0; i < rows; i++) {
        double *row = C + i * cols;
        const double *a = A + i * k;
        if (tb) { /* dot products of rows */
            for (size_t j = 0; j < cols; j++) {
                double s = 0;
                for (size_t t = 0; t < k; t++)
                    s += a[t] * B[j * k + t];
                row[j] = s;
            }
            continue;
        }
        memset(row, 0, cols * sizeof *row); /* row by row: streams B's rows */
        for (size_t t = 0; t < k; t++) {
            const double *b = B + t * cols;
            for (size_t j = 0; j < cols; j++)
                row[j] += a[t] * b[j];
        }
    }
}

/* G = M M^T (out <= in) or M^T M, n x n with n = min(out, in), upper
 * triangle (all of it without OpenBLAS). */
static void gram_small_side(double *G, const double *M, size_t out, size_t in)
{
    size_t n = out <= in ? out : in;
#ifdef FP_HAVE_OPENBLAS
    if (!agg_baseline_paths()) {
        cblas_dsyrk(CblasRowMajor, CblasUpper, out <= in ? CblasNoTrans : CblasTrans, (blasint)n,
                    (blasint)(out <= in ? in : out), 1.0, M, (blasint)in, 0.0, G, (blasint)n);
        return;
    }
#endif
    memset(G, 0, n * n * sizeof *G);
    if (out <= in) {
        for (size_t a = 0; a < n; a++)
            for (size_t b = a; b < n; b++) {
                double t = 0;
                for (size_t i = 0; i < in; i++)
                    t += M[a * in + i] * M[b * in + i];
                G[a * n + b] = t;
            }
    } else {
        for (size_t r = 0; r < out; r++) /* rank-1 updates row by row: streams M */
            for (size_t a = 0; a < n; a++) {
                double x = M[r * in + a];
                for (size_t b = a; b < n; b++)
                    G[a * n + b] += x * M[r * in + b];
            }
    }
}

/* Rank-R factors of a dense M (out x in, row-major). Why not a full SVD of
 * M: only the top R of min(out, in) components are kept, and dgesdd's
 * bidiagonalization of every M (a 512 x 1376 one per module at fp bench fed
 * --aggregators' shape) took most of flexlora's 13 s. Instead: the
 * eigenvectors of the small side's Gram matrix for its R largest eigenvalues
 * (dsyevr, range 'I'), then the other side by one product with M: for u_j
 * (out <= in), a_j = u_j^T M, s_j = |a_j| (the singular value, taken from M
 * itself rather than from the eigenvalue, which squares M's condition), B'
 * column j = u_j sqrt(s_j), A' row j = a_j / sqrt(s_j). Components in
 * descending order; one whose s_j is 0 stays zero. The Gram matrix loses
 * the components below about 1e-8 of the largest singular value, which a
 * rank-R truncation of an average of client updates has no use for. */
static int svd_dense(double *Bn, double *An, double *M, size_t out, size_t in, size_t R)
{
    size_t n = out <= in ? out : in, r = R < n ? R : n, other = out <= in ? in : out;
    memset(Bn, 0, out * R * sizeof *Bn);
    memset(An, 0, R * in * sizeof *An);
    if (r == 0)
        return 0;
    double *G = malloc(n * n * sizeof *G), *W = malloc(n * sizeof *W), *Z = malloc(n * r * sizeof *Z);
    double *y = malloc(other * sizeof *y);
    lapack_int *sup = malloc(2 * r * sizeof *sup), found = 0;
    int rc = G && W && Z && y && sup
                 ? 0
                 : fp_seterr(FP_ENOMEM, "flexlora: out of memory for the %zu x %zu Gram matrix", n, n);
    if (!rc) {
        gram_small_side(G, M, out, in);
        lapack_int info = LAPACKE_dsyevr(LAPACK_ROW_MAJOR, 'V', 'I', 'U', (lapack_int)n, G, (lapack_int)n, 0.0, 0.0,
                                         (lapack_int)(n - r + 1), (lapack_int)n, 0.0, &found, W, Z, (lapack_int)r, sup);
        if (info || (size_t)found != r)
            rc = fp_seterr(FP_EINVAL,
                           "flexlora: eigenvectors of the %zu x %zu Gram matrix failed (LAPACK info %d, %d of %zu)", n,
                           n, (int)info, (int)found, r);
    }
    for (size_t jj = 0; !rc && jj < r; jj++) {
        size_t j = r - 1 - jj; /* dsyevr: ascending */
        double s = 0;
        if (out <= in) { /* y = M^T u, M's rows streamed */
            memset(y, 0, in * sizeof *y);
            for (size_t q = 0; q < out; q++) {
                double u = Z[q * r + j];
                for (size_t i = 0; i < in; i++)
                    y[i] += u * M[q * in + i];
            }
        } else { /* y = M v */
            for (size_t i = 0; i < out; i++) {
                double t = 0;
                for (size_t q = 0; q < in; q++)
                    t += M[i * in + q] * Z[q * r + j];
                y[i] = t;
            }
        }
        for (size_t i = 0; i < other; i++)
            s += y[i] * y[i];
        s = sqrt(s);
        if (!(s > 0))
            continue;
        double sq = sqrt(s);
        for (size_t i = 0; i < n; i++) { /* the eigenvector's side */
            if (out <= in)
                Bn[i * R + jj] = Z[i * r + j] * sq;
            else
                An[jj * in + i] = Z[i * r + j] * sq;
        }
        for (size_t i = 0; i < other; i++) {
            if (out <= in)
                An[jj * in + i] = y[i] / sq;
            else
                Bn[i * R + jj] = y[i] / sq;
        }
    }
    free(G);
    free(W);
    free(Z);
    free(y);
    free(sup);
    return rc;
}

/* Rank-R factors of M = Bc Ac: Bn (out x R) and An (R x in), row-major. */
static int svd_top(double *Bn, double *An, const double *Bc, const double *Ac, size_t out, size_t in, size_t m,
                   size_t R)
{
    size_t mn = out < in ? out : in;
    memset(Bn, 0, out * R * sizeof *Bn);
    memset(An, 0, R * in * sizeof *An);
    int rc = 0;
    lapack_int info = 0;
    if (m == 0)
        return 0;
    if (m <= mn) {
        /* Qb (out x m), Rb (m x m); Qa (in x m), Ra (m x m) */
        double *Qb = malloc(out * m * sizeof *Qb), *Qa = malloc(in * m * sizeof *Qa);
        double *tb = malloc(m * sizeof *tb), *ta = malloc(m * sizeof *ta);
        double *C = malloc(m * m * sizeof *C), *Bs = malloc(m * R * sizeof *Bs), *As = malloc(R * m * sizeof *As);
        double *Rb = calloc(m * m, sizeof *Rb), *Ra = calloc(m * m, sizeof *Ra);
        if (!Qb || !Qa || !tb || !ta || !C || !Bs || !As || !Rb || !Ra) {
            rc = fp_seterr(FP_ENOMEM, "flexlora: out of memory");
            goto small_out;
        }
        memcpy(Qb, Bc, out * m * sizeof *Qb);
        for (size_t j = 0; j < m; j++) /* Qa = Ac^T */
            for (size_t i = 0; i < in; i++)
                Qa[i * m + j] = Ac[j * in + i];
        info = LAPACKE_dgeqrf(LAPACK_ROW_MAJOR, (lapack_int)out, (lapack_int)m, Qb, (lapack_int)m, tb);
        if (!info)
            info = LAPACKE_dgeqrf(LAPACK_ROW_MAJOR, (lapack_int)in, (lapack_int)m, Qa, (lapack_int)m, ta);
        for (size_t i = 0; !info && i < m; i++)
            for (size_t j = i; j < m; j++) {
                Rb[i * m + j] = Qb[i * m + j];
                Ra[i * m + j] = Qa[i * m + j];
            }
        if (!info)
            info = LAPACKE_dorgqr(LAPACK_ROW_MAJOR, (lapack_int)out, (lapack_int)m, (lapack_int)m, Qb,
                                  (lapack_int)m, tb);
        if (!info)
            info = LAPACKE_dorgqr(LAPACK_ROW_MAJOR, (lapack_int)in, (lapack_int)m, (lapack_int)m, Qa,
                                  (lapack_int)m, ta);
        if (info) {
            rc = fp_seterr(FP_EINVAL, "flexlora: QR failed (LAPACK info %d)", (int)info);
            goto small_out;
        }
        /* M = Qb (Rb Ra^T) Qa^T: the top R components of the m x m C = Rb Ra^T
         * (svd_dense: Bs, As), then B' = Qb Bs and A' = As Qa^T */
        dmm(C, Rb, Ra, m, m, m, 1);
        rc = svd_dense(Bs, As, C, m, m, R); /* Bs m x R, As R x m (zero past rank min(R, m)) */
        if (rc)
            goto small_out;
        dmm(Bn, Qb, Bs, out, R, m, 0);
        dmm(An, As, Qa, R, in, m, 1);
    small_out:
        free(Qb);
        free(Qa);
        free(tb);
        free(ta);
        free(C);
        free(Bs);
        free(As);
        free(Rb);
        free(Ra);
        return rc;
    }
    double *M = malloc(out * in * sizeof *M);
    if (!M)
        return fp_seterr(FP_ENOMEM, "flexlora: out of memory for a %zu x %zu product", out, in);
    /* M = Bc Ac, out x m by m x in with m = the clients' summed ranks (900 at
     * 100 clients): a plain loop here took most of flexlora's 31-34 s at fp
     * bench fed --aggregators' shape */
    dmm(M, Bc, Ac, out, in, m, 0);
    rc = svd_dense(Bn, An, M, out, in, R);
    free(M);
    return rc;
}

size_t agg_flex_products(const fp_lora_vec_layout *l)
{
    size_t n = 0;
    for (size_t s = 0; l && s < l->n; s++)
        n += (size_t)l->slots[s].out * (size_t)l->slots[s].in;
    return n;
}

static double gval(const fp_agg_ctx *c, size_t i) { return c->global ? (double)c->global[i] : 0.0; }

/* Writes the new factors minus the global's for one slot. */
static void put_delta(float *delta, const fp_agg_ctx *c, const fp_lora_slot *sl, size_t R, const double *Bn,
                      const double *An)
{
    size_t out = (size_t)sl->out, in = (size_t)sl->in;
    for (size_t i = 0; i < out; i++)
        for (size_t j = 0; j < R; j++) {
            size_t at = sl->b_off + i * R + j;
            delta[at] = (float)(Bn[i * R + j] - gval(c, at));
        }
    for (size_t j = 0; j < R; j++)
        for (size_t i = 0; i < in; i++) {
            size_t at = sl->a_off + j * in + i;
            delta[at] = (float)(An[j * in + i] - gval(c, at));
        }
}

static int flex_plain(const fp_aggregator *self, float *delta, const fp_agg_ctx *c, const float *const *x,
                      const fp_agg_client *cl, size_t K)
{
    (void)self;
    double W = 0;
    int rc = agg_total_weight(&W, cl, K, "flexlora");
    if (!rc && (!c->layout || c->layout->dim != c->dim))
        rc = fp_seterr(FP_EINVAL, "flexlora: needs the LoRA layout of the %zu-element vector", c->dim);
    if (rc)
        return rc;
    const fp_lora_vec_layout *l = c->layout;
    size_t R = (size_t)l->lc.rank, m = 0;
    for (size_t k = 0; k < K; k++)
        m += (size_t)agg_rank(c, &cl[k]);
    for (size_t s = 0; !rc && s < l->n; s++) {
        const fp_lora_slot *sl = &l->slots[s];
        size_t out = (size_t)sl->out, in = (size_t)sl->in;
        double *Bc = malloc(out * m * sizeof *Bc + 8), *Ac = malloc(m * in * sizeof *Ac + 8);
        double *Bn = malloc(out * R * sizeof *Bn), *An = malloc(R * in * sizeof *An);
        if (!Bc || !Ac || !Bn || !An)
            rc = fp_seterr(FP_ENOMEM, "flexlora: out of memory for module %zu", s);
        size_t col = 0;
        for (size_t k = 0; !rc && k < K; k++) {
            double sp = sqrt(cl[k].weight / W);
            size_t r = (size_t)agg_rank(c, &cl[k]);
            for (size_t i = 0; i < out; i++)
                for (size_t t = 0; t < r; t++) {
                    size_t at = sl->b_off + i * R + t;
                    Bc[i * m + col + t] = sp * (gval(c, at) + x[k][at]);
                }
            for (size_t t = 0; t < r; t++)
                for (size_t j = 0; j < in; j++) {
                    size_t at = sl->a_off + t * in + j;
                    Ac[(col + t) * in + j] = sp * (gval(c, at) + x[k][at]);
                }
            col += r;
        }
        if (!rc)
            rc = svd_top(Bn, An, Bc, Ac, out, in, m, R);
        if (!rc)
            put_delta(delta, c, sl, R, Bn, An);
        free(Bc);
        free(Ac);
        free(Bn);
        free(An);
    }
    return rc;
}

static size_t flex_len(const fp_aggregator *self, const fp_agg_ctx *c, unsigned pass)
{
    (void)self;
    return pass == 0 && c->layout ? agg_flex_products(c->layout) + 1 : 0;
}

static int flex_client(const fp_aggregator *self, float *out, const fp_agg_ctx *c, unsigned pass, const float *u,
                       const fp_agg_client *me, const float *const *prev)
{
    (void)self;
    (void)prev;
    if (pass != 0 || !(me->weight > 0) || me->weight > 1 || !(c->clip > 0) || !c->layout ||
        c->layout->dim != c->dim)
        return fp_seterr(FP_EINVAL, "flexlora: bad pass %u, weight %g, clip %g or layout", pass, me->weight,
                         c->clip);
    const fp_lora_vec_layout *l = c->layout;
    size_t R = (size_t)l->lc.rank, r = (size_t)agg_rank(c, me), at = 0;
    for (size_t i = 0; i < c->dim; i++)
        if (isnan(u[i]))
            return fp_seterr(FP_EINVAL, "flexlora: NaN in the update at %zu", i);
    for (size_t s = 0; s < l->n; s++) {
        const fp_lora_slot *sl = &l->slots[s];
        size_t o = (size_t)sl->out, in = (size_t)sl->in;
        for (size_t i = 0; i < o; i++)
            for (size_t j = 0; j < in; j++) {
                double v = 0;
                for (size_t t = 0; t < r; t++) {
                    size_t bi = sl->b_off + i * R + t, ai = sl->a_off + t * in + j;
                    v += (gval(c, bi) + u[bi]) * (gval(c, ai) + u[ai]);
                }
                out[at++] = (float)(me->weight * agg_clampf((float)v, c->clip));
            }
    }
    out[at] = (float)(me->weight * c->clip);
    return 0;
}

static int flex_finish(const fp_aggregator *self, float *delta, const fp_agg_ctx *c, const float *const *sums)
{
    (void)self;
    if (!c->layout || c->layout->dim != c->dim)
        return fp_seterr(FP_EINVAL, "flexlora: needs the LoRA layout of the %zu-element vector", c->dim);
    const fp_lora_vec_layout *l = c->layout;
    size_t R = (size_t)l->lc.rank, at = 0, np = agg_flex_products(l);
    double W = (double)sums[0][np] / c->clip;
    if (!(W > 1e-6))
        return fp_seterr(FP_EABORT, "flexlora: secure sum of weights is %g: nothing to average", W);
    int rc = 0;
    for (size_t s = 0; !rc && s < l->n; s++) {
        const fp_lora_slot *sl = &l->slots[s];
        size_t o = (size_t)sl->out, in = (size_t)sl->in;
        double *M = malloc(o * in * sizeof *M), *Bn = malloc(o * R * sizeof *Bn), *An = malloc(R * in * sizeof *An);
        if (!M || !Bn || !An)
            rc = fp_seterr(FP_ENOMEM, "flexlora: out of memory for module %zu", s);
        for (size_t i = 0; !rc && i < o * in; i++)
            M[i] = sums[0][at + i] / W;
        at += o * in;
        if (!rc)
            rc = svd_dense(Bn, An, M, o, in, R);
        if (!rc)
            put_delta(delta, c, sl, R, Bn, An);
        free(M);
        free(Bn);
        free(An);
    }
    return rc;
}

const fp_aggregator fp_agg_flexlora_def = {.name = "flexlora",
                                           .secure_ok = 1,
                                           .secure_sums = 1,
                                           .secure_len_x = flex_len,
                                           .client_vector_x = flex_client,
                                           .finish_secure_x = flex_finish,
                                           .aggregate_plain_x = flex_plain,
                                           .needs_layout = 1};
