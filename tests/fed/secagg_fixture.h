/* Shared set-up for the SecAgg+ tests: a roster of n clients with fresh
 * identities (ids neither contiguous nor sorted), round parameters, inputs. */
#ifndef SECAGG_FIXTURE_H
#define SECAGG_FIXTURE_H

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fedproxy/secagg.h"
#include "fp_test.h"

typedef struct fixture {
    uint32_t n;
    size_t d;
    fp_identity *idn;         /* idn[i] belongs to members[i] */
    fp_secagg_member *members;
    fp_secagg_params p;
    float **x;                /* float inputs per member */
    uint32_t **q;             /* ring inputs per member (for exact checks) */
} fixture;

static inline void fx_init(fixture *f, uint32_t n, uint32_t t, uint32_t k, size_t d, uint64_t round)
{
    memset(f, 0, sizeof *f);
    f->n = n;
    f->d = d;
    f->idn = calloc(n, sizeof *f->idn);
    f->members = calloc(n, sizeof *f->members);
    f->x = calloc(n, sizeof *f->x);
    f->q = calloc(n, sizeof *f->q);
    for (uint32_t i = 0; i < n; i++) {
        CHECK_OK(fp_identity_keygen(&f->idn[i]));
        f->members[i].id = 5000u - 37u * i; /* descending: the library must sort */
        memcpy(f->members[i].sign_pk, f->idn[i].pk, 32);
        f->x[i] = malloc(sizeof(float) * d);
        f->q[i] = malloc(sizeof(uint32_t) * d);
        for (size_t j = 0; j < d; j++) {
            f->x[i][j] = fp_test_uniform(-0.6f, 0.6f);
            f->q[i][j] = fp_test_u32();
        }
    }
    memset(f->p.session_id, 0xA5, sizeof f->p.session_id);
    f->p.session_id[0] = (uint8_t)fp_test_u32();
    f->p.round = round;
    f->p.members = f->members;
    f->p.n_clients = n;
    f->p.threshold = t;
    f->p.degree = k;
    for (int i = 0; i < 32; i++)
        f->p.graph_seed[i] = (uint8_t)(i * 11 + 3);
    f->p.vec_len = d;
    f->p.ring.clip = 0.5f;
    f->p.ring.scale_bits = 16;
}

static inline void fx_free(fixture *f)
{
    for (uint32_t i = 0; i < f->n; i++) {
        fp_identity_wipe(&f->idn[i]);
        free(f->x[i]);
        free(f->q[i]);
    }
    free(f->idn);
    free(f->members);
    free(f->x);
    free(f->q);
}

/* Whether member i's input should be in the sum for a drop pattern. */
static inline int fx_included(const uint8_t *drop, uint32_t i)
{
    return !drop || drop[i] == FP_SECAGG_DROP_NONE || drop[i] == FP_SECAGG_DROP_BEFORE_UNMASK;
}

/* Max |fsum - sum of clipped float inputs of included members|. */
static inline double fx_float_err(const fixture *f, const float *fsum, const uint8_t *drop)
{
    double worst = 0;
    const double c = f->p.ring.clip;
    for (size_t j = 0; j < f->d; j++) {
        double ref = 0;
        for (uint32_t i = 0; i < f->n; i++)
            if (fx_included(drop, i))
                ref += fmax(-c, fmin(c, (double)f->x[i][j]));
        double e = fabs((double)fsum[j] - ref);
        if (!(e <= worst))
            worst = e;
    }
    return worst;
}

/* Runs a simulated round and checks the sum against the plain float sum within
 * the quantisation bound (one step per included client, plus float rounding). */
static inline int fx_run(fixture *f, const uint8_t *drop, uint32_t *n_included)
{
    uint32_t *sum = malloc(sizeof *sum * f->d);
    float *fsum = malloc(sizeof *fsum * f->d);
    fp_secagg_sim_stats st;
    const float *const *xs = (const float *const *)f->x;
    int rc = fp_secagg_sim_round(sum, fsum, &st, &f->p, f->idn, xs, drop);
    if (rc == 0) {
        uint32_t expect = 0;
        for (uint32_t i = 0; i < f->n; i++)
            expect += (uint32_t)fx_included(drop, i);
        CHECKF(st.n_included == expect, "%u clients included, expected %u", st.n_included, expect);
        double bound = expect * ldexp(1.0, -(int)f->p.ring.scale_bits) + 1e-5;
        double err = fx_float_err(f, fsum, drop);
        CHECKF(err <= bound, "secure sum differs from the float sum by %g (bound %g)", err, bound);
        if (n_included)
            *n_included = st.n_included;
    }
    free(sum);
    free(fsum);
    return rc;
}

#endif
