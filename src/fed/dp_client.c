/* The client's part of differential privacy (dp_internal.h): clip, and in
 * distributed mode add this client's share of the noise. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "dp_internal.h"
#include "error_internal.h"
#include "fedproxy/json_check.h"

int dp_cl_parse(dp_cl *d, const cJSON *o)
{
    d->on = 0;
    if (!o)
        return 0;
    static const fp_json_field f[] = {
        {"mode", FP_JSON_STRING, 1}, {"clip", FP_JSON_NUMBER, 1}, {"sigma", FP_JSON_NUMBER, 1}};
    int rc = fp_json_check(o, f, 3, "ROUND_START dp");
    if (rc)
        return rc;
    const char *m = fed_jstr(o, "mode", "");
    d->clip = fed_jnum(o, "clip", 0);
    d->sigma = fed_jnum(o, "sigma", -1);
    if (strcmp(m, "distributed") && strcmp(m, "central"))
        return fp_seterr(FP_EFORMAT, "ROUND_START dp: unknown mode \"%s\"", m);
    d->mode = strcmp(m, "central") ? FP_DP_DISTRIBUTED : FP_DP_CENTRAL;
    if (!(d->clip > 0) || !isfinite(d->clip) || !(d->sigma >= 0) || !isfinite(d->sigma))
        return fp_seterr(FP_EFORMAT, "ROUND_START dp: clip %g / sigma %g out of range", d->clip, d->sigma);
    if (d->mode == FP_DP_CENTRAL && d->sigma != 0)
        return fp_seterr(FP_EFORMAT, "ROUND_START dp: central mode with client noise %g", d->sigma);
    d->on = 1;
    return 0;
}

int dp_cl_policy(const dp_cl *d, double min_noise)
{
    if (!(min_noise > 0))
        return 0;
    if (!d->on)
        return fp_seterr(FP_EPOLICY, "the round runs without differential privacy; this client requires noise "
                                     "multiplier >= %g on its own share (--dp-min-noise)", min_noise);
    if (d->mode != FP_DP_DISTRIBUTED)
        return fp_seterr(FP_EPOLICY, "the round's DP noise is added by the server (central mode), which this client "
                                     "cannot check; it requires noise multiplier >= %g on its own share "
                                     "(--dp-min-noise)", min_noise);
    double own = d->sigma / d->clip;
    if (!(own >= min_noise))
        return fp_seterr(FP_EPOLICY, "the round's DP noise for this client's share is sigma %g at clip %g, noise "
                                     "multiplier %.4g, below this client's floor %g (--dp-min-noise)",
                         d->sigma, d->clip, own, min_noise);
    return 0;
}

int dp_cl_update(const dp_cl *d, float *update, size_t dim, int secure)
{
    if (!d->on)
        return 0;
    int rc = fp_dp_clip_l2(update, dim, d->clip, NULL);
    if (rc || secure || d->sigma == 0)
        return rc;
    fp_dp_rng r;
    fp_dp_rng_init(&r);
    rc = fp_dp_add_gaussian(update, dim, d->sigma, &r);
    fp_dp_rng_wipe(&r);
    return rc;
}

int dp_cl_masked(const dp_cl *d, fp_secagg_client *sa, uint8_t **out, size_t *out_len, const uint8_t *relay,
                 size_t relay_len, const float *x, size_t len, size_t dim, const fp_ring_params *ring)
{
    if (dim > len)
        return fp_seterr(FP_EINVAL, "dp: update of %zu in a vector of %zu", dim, len);
    uint32_t *q = malloc(len * sizeof *q + 1);
    if (!q)
        return fp_seterr(FP_ENOMEM, "dp: out of memory for %zu ring elements", len);
    int rc = fp_ring_quantize(q, x, len, ring, NULL);
    if (!rc && d->sigma > 0) {
        double s = ldexp(d->sigma, (int)ring->scale_bits);
        fp_dp_rng r;
        fp_dp_rng_init(&r);
        rc = fp_dp_add_ring_noise(q, dim, s * s, &r);
        fp_dp_rng_wipe(&r);
    }
    if (!rc)
        rc = fp_secagg_client_masked_input_u32(sa, out, out_len, relay, relay_len, q, len);
    sodium_memzero(q, len * sizeof *q);
    free(q);
    return rc;
}
