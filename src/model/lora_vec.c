/* The federation's flat LoRA vector (lora_vec.h): layout, init, truncation and
 * PEFT files. The layout must equal the engine's packed LoRA order; the test
 * compares it with fp_model_tensor_info on real models. */
#include <math.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "error_internal.h"
#include "fedproxy/lora_vec.h"
#include "fedproxy/peft.h"

static void shapes(const fp_llama_config *c, int64_t in[7], int64_t out[7])
{
    int64_t C = c->hidden, qd = c->heads * c->head_dim, kd = c->kv_heads * c->head_dim, I = c->intermediate;
    const int64_t i[7] = {C, C, C, qd, C, C, I}, o[7] = {qd, kd, kd, C, I, I, C};
    memcpy(in, i, sizeof i);
    memcpy(out, o, sizeof o);
}

int fp_lora_vec_layout_build(fp_lora_vec_layout *out, const fp_llama_config *cfg, const fp_lora_config *lc)
{
    if (!out || !cfg || !lc)
        return fp_seterr(FP_EINVAL, "lora vector layout: NULL argument");
    memset(out, 0, sizeof *out);
    int rc = fp_llama_config_check(cfg);
    if (rc)
        return rc;
    if (lc->rank < 1 || lc->rank > 4096)
        return fp_seterr(FP_EINVAL, "lora vector layout: rank %d outside 1..4096", lc->rank);
    if (!(lc->targets & FP_LORA_ALL) || (lc->targets & ~(unsigned)FP_LORA_ALL))
        return fp_seterr(FP_EINVAL, "lora vector layout: targets 0x%x must be a nonzero subset of 0x7f", lc->targets);
    if (cfg->layers < 64 && (lc->layers >> cfg->layers))
        return fp_seterr(FP_EINVAL, "lora vector layout: layers mask 0x%llx names layers beyond the model's %lld",
                         (unsigned long long)lc->layers, (long long)cfg->layers);
    if (lc->layers && cfg->layers > 64)
        return fp_seterr(FP_EINVAL, "lora vector layout: a layer mask needs a model of at most 64 layers");
    int64_t in[7], o[7];
    shapes(cfg, in, o);
    size_t n = 0;
    for (int64_t l = 0; l < cfg->layers; l++)
        if (!lc->layers || (lc->layers >> l & 1))
            for (int t = 0; t < 7; t++)
                n += (lc->targets >> t) & 1;
    out->slots = calloc(n ? n : 1, sizeof *out->slots);
    if (!out->slots)
        return fp_seterr(FP_ENOMEM, "lora vector layout: out of host memory");
    size_t off = 0, k = 0, R = (size_t)lc->rank;
    for (int64_t l = 0; l < cfg->layers; l++) {
        if (lc->layers && !(lc->layers >> l & 1))
            continue;
        for (int t = 0; t < 7; t++) {
            if (!((lc->targets >> t) & 1))
                continue;
            fp_lora_slot *s = &out->slots[k++];
            s->layer = (int)l;
            s->module = t;
            s->in = in[t];
            s->out = o[t];
            s->a_off = off;
            off += R * (size_t)in[t];
            s->b_off = off;
            off += (size_t)o[t] * R;
        }
    }
    out->lc = *lc;
    out->n_layers = cfg->layers;
    out->n = n;
    out->dim = off;
    return 0;
}

void fp_lora_vec_layout_free(fp_lora_vec_layout *l)
{
    if (!l)
        return;
    free(l->slots);
    memset(l, 0, sizeof *l);
}

static int check_vec(const fp_lora_vec_layout *l, const float *vec, size_t dim, const char *what)
{
    if (!l || !vec)
        return fp_seterr(FP_EINVAL, "%s: NULL argument", what);
    if (dim != l->dim)
        return fp_seterr(FP_ESHAPE, "%s: vector has %zu elements but the layout needs %zu", what, dim, l->dim);
    return 0;
}

int fp_lora_vec_init(float *vec, size_t dim, const fp_lora_vec_layout *l, uint64_t seed)
{
    int rc = check_vec(l, vec, dim, "lora vector init");
    if (rc)
        return rc;
    if (sodium_init() < 0)
        return fp_seterr(FP_ECRYPTO, "lora vector init: libsodium failed to initialise");
    unsigned char key[crypto_stream_chacha20_KEYBYTES] = {0}, nonce[crypto_stream_chacha20_NONCEBYTES] = {0};
    memcpy(key, "fp-lora-init", 12);
    for (int i = 0; i < 8; i++)
        key[16 + i] = (unsigned char)(seed >> (8 * i));
    memset(vec, 0, dim * sizeof *vec);
    size_t R = (size_t)l->lc.rank;
    for (size_t k = 0; k < l->n; k++) {
        const fp_lora_slot *s = &l->slots[k];
        size_t na = R * (size_t)s->in;
        uint32_t *u = malloc(na * sizeof *u);
        if (!u)
            return fp_seterr(FP_ENOMEM, "lora vector init: out of host memory");
        /* one stream per slot (nonce = slot index) so a slot's values do not
         * depend on the slots before it */
        for (int i = 0; i < 8; i++)
            nonce[i] = (unsigned char)((uint64_t)k >> (8 * i));
        crypto_stream_chacha20((unsigned char *)u, na * sizeof *u, nonce, key);
        float bound = 1.0f / sqrtf((float)s->in);
        for (size_t i = 0; i < na; i++)
            vec[s->a_off + i] = ((float)(u[i] >> 8) * (1.0f / 16777216.0f) * 2.0f - 1.0f) * bound;
        free(u);
    }
    sodium_memzero(key, sizeof key);
    return 0;
}

int fp_lora_vec_truncate(float *vec, size_t dim, const fp_lora_vec_layout *l, int r)
{
    int rc = check_vec(l, vec, dim, "lora vector truncate");
    if (rc)
        return rc;
    int R = l->lc.rank;
    if (r < 1 || r > R)
        return fp_seterr(FP_EINVAL, "lora vector truncate: rank %d outside 1..%d", r, R);
    for (size_t k = 0; k < l->n; k++) {
        const fp_lora_slot *s = &l->slots[k];
        memset(vec + s->a_off + (size_t)r * (size_t)s->in, 0, (size_t)(R - r) * (size_t)s->in * sizeof *vec);
        for (int64_t o = 0; o < s->out; o++)
            memset(vec + s->b_off + (size_t)o * (size_t)R + (size_t)r, 0, (size_t)(R - r) * sizeof *vec);
    }
    return 0;
}

int fp_lora_vec_save_peft(const fp_lora_vec_layout *l, const float *vec, size_t dim, float dropout,
                          const char *base_model, const char *dir)
{
    int rc = check_vec(l, vec, dim, "lora vector save");
    if (rc)
        return rc;
    if (!dir)
        return fp_seterr(FP_EINVAL, "lora vector save: NULL directory");
    fp_lora_adapter a;
    fp_lora_adapter_init(&a, l->lc.rank, l->lc.alpha, dropout, base_model ? base_model : "");
    for (size_t k = 0; k < l->n && !rc; k++) {
        const fp_lora_slot *s = &l->slots[k];
        rc = fp_lora_adapter_add(&a, s->layer, s->module, l->lc.rank, (int)s->in, (int)s->out, l->lc.alpha,
                                 vec + s->a_off, vec + s->b_off);
    }
    if (!rc)
        rc = fp_lora_adapter_save(&a, dir);
    fp_lora_adapter_free(&a);
    return rc;
}

int fp_lora_vec_load_peft(float *vec, size_t dim, const fp_lora_vec_layout *l, const char *dir)
{
    int rc = check_vec(l, vec, dim, "lora vector load");
    if (rc)
        return rc;
    fp_lora_adapter a;
    rc = fp_lora_adapter_load(&a, dir);
    if (rc)
        return rc;
    memset(vec, 0, dim * sizeof *vec);
    int R = l->lc.rank;
    for (size_t i = 0; i < a.n && !rc; i++) {
        const fp_lora_pair *p = &a.pairs[i];
        const fp_lora_slot *s = NULL;
        for (size_t k = 0; k < l->n && !s; k++)
            if (l->slots[k].layer == p->layer && l->slots[k].module == p->module)
                s = &l->slots[k];
        if (!s) {
            rc = fp_seterr(FP_EFORMAT, "lora vector load: %s: layer %d %s is not in the federation's layout", dir,
                           p->layer, fp_lora_module_name(p->module));
            break;
        }
        if (p->rank < 1 || p->rank > R || p->in != s->in || p->out != s->out) {
            rc = fp_seterr(FP_EFORMAT, "lora vector load: %s: layer %d %s is rank %d [%d x %d], the layout wants rank <= %d [%lld x %lld]",
                           dir, p->layer, fp_lora_module_name(p->module), p->rank, p->out, p->in, R,
                           (long long)s->out, (long long)s->in);
            break;
        }
        float k = (p->alpha / (float)p->rank) / (l->lc.alpha / (float)R);
        memcpy(vec + s->a_off, p->A, (size_t)p->rank * (size_t)p->in * sizeof *vec);
        for (int o = 0; o < p->out; o++)
            for (int j = 0; j < p->rank; j++)
                vec[s->b_off + (size_t)o * (size_t)R + (size_t)j] = p->B[(size_t)o * (size_t)p->rank + (size_t)j] * k;
    }
    fp_lora_adapter_free(&a);
    return rc;
}
