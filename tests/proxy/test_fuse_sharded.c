/* fp_proxy_fuse --merge on the kind of LLM users really have (issue 6): BF16
 * weights split over three shards with a model.safetensors.index.json.
 * The merged LLM has the same shard files holding the same tensors (same
 * weight_map, total_size right), each tensor in its input dtype; unmerged
 * tensors are the input's bytes; merged ones are W + (alpha/r) B A computed in
 * double here and rounded to the nearest-even BF16 by an oracle of this test
 * (including values that lie just past a BF16 halfway point, where rounding
 * through F32 first would be wrong); merge_dtype F32 gives the double merge
 * to 1e-6; both load and give the logits of the adapter applied at runtime.
 * A failure after the shards are written leaves neither OUT_DIR nor a temp
 * directory (and a previous merge intact); an unrelated directory is refused;
 * a previous merge output is replaced whole. A sharded proxy goes through the
 * signed bundle verbatim, still verifies, and fuses to the same bytes. */
#include <cJSON.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fedproxy/fed.h"
#include "fedproxy/peft.h"
#include "fedproxy/safetensors.h"
#include "proxy_fixture.h"

enum { B = 2, T = 9, NSHARD = 3 };

static const char *SHARDS[NSHARD] = {"model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
                                     "model-00003-of-00003.safetensors"};

/* the F32 model in src as BF16 in NSHARD shards in dst, with an index */
static void write_bf16_sharded(const char *src, const char *dst)
{
    fp_st_file *st = NULL;
    CHECK_OK(fp_st_open_dir(&st, src));
    size_t n = fp_st_count(st);
    uint16_t **buf = calloc(n, sizeof *buf);
    fp_st_entry *e = calloc(n, sizeof *e);
    cJSON *idx = cJSON_CreateObject(), *wm = cJSON_CreateObject();
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        const fp_st_tensor *t = fp_st_at(st, i);
        float *f = malloc(t->numel * sizeof *f);
        CHECK_OK(fp_st_to_f32(f, t->numel, t));
        buf[i] = malloc(t->numel * 2);
        for (uint64_t j = 0; j < t->numel; j++)
            buf[i][j] = fp_f32_to_bf16(f[j]);
        free(f);
        e[i] = (fp_st_entry){t->name, FP_ST_BF16, t->rank, t->shape, buf[i]};
        cJSON_AddStringToObject(wm, t->name, SHARDS[i * NSHARD / n]);
        total += t->numel * 2;
    }
    CHECK_OK(fp_mkdirs(dst, 0755));
    for (size_t s = 0, i0 = 0; s < NSHARD; s++) {
        size_t i1 = i0;
        while (i1 < n && i1 * NSHARD / n == s)
            i1++;
        char p[1500];
        snprintf(p, sizeof p, "%s/%s", dst, SHARDS[s]);
        CHECK_OK(fp_st_write(p, e + i0, i1 - i0, NULL, 0));
        i0 = i1;
    }
    cJSON *meta = cJSON_AddObjectToObject(idx, "metadata");
    cJSON_AddNumberToObject(meta, "total_size", (double)total);
    cJSON_AddItemToObject(idx, "weight_map", wm);
    char *text = cJSON_Print(idx), p[1500];
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dst);
    CHECK_OK(fp_write_file_atomic(p, text, strlen(text), 0644));
    free(text);
    cJSON_Delete(idx);
    for (size_t i = 0; i < n; i++)
        free(buf[i]);
    free(buf);
    free(e);
    fp_st_close(st);
    char cmd[4000];
    snprintf(cmd, sizeof cmd, "cp '%s/config.json' '%s/tokenizer.json' '%s/'", src, src, dst);
    CHECK(system(cmd) == 0);
}

static cJSON *read_json(const char *dir, const char *name)
{
    char p[1500];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    char *t = pfx_read(p, NULL);
    cJSON *j = t ? cJSON_Parse(t) : NULL;
    free(t);
    CHECKF(j != NULL, "%s does not parse", p);
    return j;
}

/* the BF16 nearest to e, ties to even, found by looking at the neighbours of a
 * first guess (independent of the library's rounding path) */
static uint16_t bf16_oracle(double e)
{
    uint16_t g = fp_f32_to_bf16((float)e), best = g;
    double bd = fabs((double)fp_bf16_to_f32(g) - e);
    for (int k = -2; k <= 2; k++) {
        uint16_t c = (uint16_t)(g + k);
        double d = fabs((double)fp_bf16_to_f32(c) - e);
        if (d < bd || (d == bd && !(c & 1) && (best & 1))) {
            best = c;
            bd = d;
        }
    }
    return best;
}

static void wname(char *out, size_t n, int layer, int module)
{
    snprintf(out, n, "model.layers.%d.%s.%s.weight", layer, module <= 3 ? "self_attn" : "mlp",
             fp_lora_module_name(module));
}

/* the proxy pair that lands on LLM tensor name (span none), or NULL */
static const fp_lora_pair *pair_for(const fp_lora_adapter *pa, const fp_proxy_map *map, const char *name)
{
    char nm[160];
    for (size_t k = 0; k < pa->n; k++) {
        wname(nm, sizeof nm, map->layers[pa->pairs[k].layer].llm, pa->pairs[k].module);
        if (!strcmp(nm, name))
            return &pa->pairs[k];
    }
    return NULL;
}

/* W + (alpha/r) B A at (o, i) in double, summed over r in order */
static double merged_at(double w, const fp_lora_pair *p, int o, int i)
{
    double acc = 0;
    for (int r = 0; r < p->rank; r++)
        acc += (double)p->B[o * p->rank + r] * p->A[r * p->in + i];
    return w + (double)p->alpha / (double)p->rank * acc;
}

typedef struct cmp_stats {
    size_t merged_tensors, merged_elems, moved, bad, same_tensors;
    double maxerr;
} cmp_stats;

/* compares out (a merge of in with pa on map) shard by shard; dtype 0: keep (exact
 * BF16 oracle), FP_ST_F32: within 1e-6 of the double merge */
static cmp_stats compare_merge(const char *in, const char *out, const fp_lora_adapter *pa, const fp_proxy_map *map,
                               int dtype)
{
    cmp_stats cs = {0};
    for (int s = 0; s < NSHARD; s++) {
        char pi[1500], po[1500];
        snprintf(pi, sizeof pi, "%s/%s", in, SHARDS[s]);
        snprintf(po, sizeof po, "%s/%s", out, SHARDS[s]);
        fp_st_file *a = NULL, *b = NULL;
        CHECK_OK(fp_st_open(&a, pi));
        CHECKF(fp_st_open(&b, po) == 0, "output shard %s: %s", po, fp_errmsg());
        if (!a || !b) {
            fp_st_close(a);
            fp_st_close(b);
            cs.bad++;
            continue;
        }
        CHECKF(fp_st_count(a) == fp_st_count(b), "shard %s: %zu tensors in, %zu out", SHARDS[s], fp_st_count(a),
               fp_st_count(b));
        for (size_t i = 0; i < fp_st_count(a); i++) {
            const fp_st_tensor *t = fp_st_at(a, i), *u = fp_st_find(b, t->name);
            CHECKF(u != NULL, "%s missing from output shard %s", t->name, SHARDS[s]);
            if (!u)
                continue;
            int want = dtype ? dtype : t->dtype;
            CHECKF(u->dtype == want && u->rank == t->rank && !memcmp(u->shape, t->shape, sizeof t->shape),
                   "%s: %s %d-d out, want %s", t->name, fp_st_dtype_name(u->dtype), u->rank, fp_st_dtype_name(want));
            if (u->dtype != want || u->numel != t->numel)
                continue;
            const fp_lora_pair *p = pair_for(pa, map, t->name);
            const uint16_t *wi = t->data;
            if (!p && !dtype) {
                CHECKF(u->nbytes == t->nbytes && !memcmp(u->data, t->data, t->nbytes), "%s changed", t->name);
                cs.same_tensors++;
                continue;
            }
            if (p)
                cs.merged_tensors++;
            for (uint64_t j = 0; j < t->numel; j++) {
                uint16_t wb;
                memcpy(&wb, (const char *)wi + 2 * j, 2);
                double w = fp_bf16_to_f32(wb);
                double d = p ? merged_at(w, p, (int)(j / (uint64_t)p->in), (int)(j % (uint64_t)p->in)) : w;
                if (!dtype) {
                    uint16_t got, exp = bf16_oracle(d);
                    memcpy(&got, (const char *)u->data + 2 * j, 2);
                    cs.bad += got != exp;
                    cs.moved += got != wb;
                } else {
                    float got;
                    memcpy(&got, (const char *)u->data + 4 * j, 4);
                    double err = fabs((double)got - d);
                    cs.maxerr = fmax(cs.maxerr, err);
                    cs.bad += !(err <= 1e-6 * fmax(1.0, fabs(d)));
                    cs.moved += p && got != (float)w;
                }
                cs.merged_elems += p != NULL;
            }
        }
        fp_st_close(a);
        fp_st_close(b);
    }
    return cs;
}

/* the shard files, the weight_map and total_size of out against in (size_mult: total_size ratio) */
static void check_layout(const char *in, const char *out, int size_mult)
{
    cJSON *ji = read_json(in, "model.safetensors.index.json"), *jo = read_json(out, "model.safetensors.index.json");
    const cJSON *wi = cJSON_GetObjectItem(ji, "weight_map"), *wo = cJSON_GetObjectItem(jo, "weight_map");
    CHECK(cJSON_GetArraySize(wi) == cJSON_GetArraySize(wo) && cJSON_GetArraySize(wi) > 0);
    for (const cJSON *e = wi ? wi->child : NULL; e; e = e->next) {
        const cJSON *f = cJSON_GetObjectItem(wo, e->string);
        CHECKF(cJSON_IsString(f) && !strcmp(f->valuestring, e->valuestring), "weight_map[%s]: %s, want %s", e->string,
               cJSON_IsString(f) ? f->valuestring : "(none)", e->valuestring);
    }
    double ti = cJSON_GetNumberValue(cJSON_GetObjectItem(cJSON_GetObjectItem(ji, "metadata"), "total_size"));
    double to = cJSON_GetNumberValue(cJSON_GetObjectItem(cJSON_GetObjectItem(jo, "metadata"), "total_size"));
    /* and what the output shards really hold */
    fp_st_file *st = NULL;
    CHECK_OK(fp_st_open_dir(&st, out));
    double held = 0;
    for (size_t i = 0; st && i < fp_st_count(st); i++)
        held += (double)fp_st_at(st, i)->nbytes;
    fp_st_close(st);
    CHECKF(to == held && to == size_mult * ti, "total_size %.0f, shards hold %.0f, input %.0f x %d", to, held, ti,
           size_mult);
    cJSON_Delete(ji);
    cJSON_Delete(jo);
    /* exactly the shards, the index and the small files: no model.safetensors, no temp files */
    DIR *d = opendir(out);
    int n = 0, shards = 0;
    for (struct dirent *e; d && (e = readdir(d));) {
        if (e->d_name[0] == '.')
            continue;
        n++;
        for (int s = 0; s < NSHARD; s++)
            shards += !strcmp(e->d_name, SHARDS[s]);
        CHECKF(!strstr(e->d_name, ".tmp") && strcmp(e->d_name, "model.safetensors"), "stray %s in %s", e->d_name,
               out);
    }
    if (d)
        closedir(d);
    CHECKF(shards == NSHARD && n == NSHARD + 4, "%s: %d shards of %d, %d files (want shards, index, config, "
                                                "tokenizer, marker)", out, shards, NSHARD, n);
}

/* no "<base>.tmp*" next to path and (gone) no path */
static int leftovers(const char *path)
{
    char parent[1500];
    snprintf(parent, sizeof parent, "%s", path);
    char *sl = strrchr(parent, '/');
    const char *base = sl ? sl + 1 : path;
    size_t bl = strlen(base);
    if (sl)
        *sl = '\0';
    int n = 0;
    DIR *d = opendir(parent);
    for (struct dirent *e; d && (e = readdir(d));)
        n += !strncmp(e->d_name, base, bl) && !strncmp(e->d_name + bl, ".tmp", 4);
    if (d)
        closedir(d);
    return n;
}

static float *logits_of(fp_ctx *ctx, const char *dir, const char *adapter, const int32_t *ids, int64_t V)
{
    fp_model *m = NULL;
    CHECK_OK(fp_model_load_dir(&m, ctx, dir));
    if (!m)
        return calloc((size_t)(B * T * V), sizeof(float));
    if (adapter)
        CHECK_OK(fp_model_load_adapter(m, adapter));
    CHECK_OK(fp_model_plan(m, B, T, FP_PLAN_INFERENCE, 0));
    CHECK_OK(fp_model_step_host(m, ids, NULL, B, T, 0, NULL));
    float *lg = malloc((size_t)(B * T * V) * sizeof *lg);
    CHECK_OK(fp_tensor_download(lg, (size_t)(B * T * V) * sizeof *lg, fp_model_logits(m)));
    fp_model_free(m);
    return lg;
}

int main(void)
{
    fp_test_seed(11);
    fp_ctx *ctx = fp_test_ctx(NULL);
    pfx f;
    pfx_init(&f, "fuse_sharded", 4, ctx);
    char llm[1400], proxy[1400], adir[1400], peft[1400], mk[1400], m32[1400], adir2[1400], mk2[1400];
    snprintf(llm, sizeof llm, "%s/llm_bf16", f.root);
    snprintf(proxy, sizeof proxy, "%s/proxy", f.root);
    snprintf(adir, sizeof adir, "%s/proxy_adapter", f.root);
    snprintf(adir2, sizeof adir2, "%s/halfway_adapter", f.root);
    snprintf(peft, sizeof peft, "%s/llm_peft", f.root);
    snprintf(mk, sizeof mk, "%s/merged_keep", f.root);
    snprintf(mk2, sizeof mk2, "%s/merged_halfway", f.root);
    snprintf(m32, sizeof m32, "%s/merged_f32", f.root);
    write_bf16_sharded(f.llm, llm);

    /* proxy of LLM layers 0, 1, 3 (uniform, one middle layer) made from the BF16 shards */
    fp_compress_opts o;
    fp_compress_opts_default(&o);
    o.select = "uniform";
    o.keep_first = 1;
    o.keep_last = 1;
    o.middle = 1;
    o.quiet = 1;
    CHECK_OK(fp_proxy_compress(ctx, llm, proxy, &o, &f.server));
    fp_proxy_map map;
    CHECK_OK(fp_proxy_read(&map, proxy, f.server.pk));
    CHECK(map.proxy_layers == 3);

    /* a random proxy adapter, every module, rank 3, alpha 6 */
    pfx_random_adapter(ctx, proxy, adir, 0.3f);
    fp_lora_adapter pa;
    CHECK_OK(fp_lora_adapter_load(&pa, adir));
    CHECK(pa.n == 3 * 7);

    /* keep: BF16 in, BF16 out, exact */
    fp_fuse_opts keep = {"none", 0.0f, 0}, f32 = {"none", 0.0f, FP_ST_F32};
    CHECK_OK(fp_proxy_fuse(llm, proxy, adir, f.server.pk, &keep, mk, NULL));
    check_layout(llm, mk, 1);
    cmp_stats cs = compare_merge(llm, mk, &pa, &map, 0);
    printf("keep: %zu merged tensors (%zu elements, %zu changed), %zu tensors byte-identical, %zu off the oracle\n",
           cs.merged_tensors, cs.merged_elems, cs.moved, cs.same_tensors, cs.bad);
    CHECK(cs.merged_tensors == pa.n && cs.bad == 0 && cs.same_tensors > 0);
    CHECKF(cs.moved > cs.merged_elems / 2, "only %zu of %zu merged elements changed: not a test", cs.moved,
           cs.merged_elems);
    {
        cJSON *ci = read_json(llm, "config.json"), *co = read_json(mk, "config.json");
        char *a = cJSON_PrintUnformatted(ci), *b = cJSON_PrintUnformatted(co);
        CHECK(a && b && !strcmp(a, b)); /* keep: config.json as it was */
        free(a);
        free(b);
        cJSON_Delete(ci);
        cJSON_Delete(co);
    }

    /* values just past a BF16 halfway point: W + A with A = ulp/2 (1 + 2^-20)
     * away from zero on row 0 of LLM layer map(0)'s q_proj. Correct rounding
     * gives the next BF16 away from zero every time; rounding through F32
     * first lands on the halfway point and gives W back for even W. */
    {
        const fp_lora_pair *q = fp_lora_adapter_find(&pa, 0, 0);
        fp_st_file *st = NULL;
        CHECK_OK(fp_st_open_dir(&st, llm));
        char nm[160];
        wname(nm, sizeof nm, map.layers[0].llm, 0);
        const fp_st_tensor *t = st ? fp_st_find(st, nm) : NULL;
        CHECK(q && t && t->dtype == FP_ST_BF16);
        if (q && t) {
            float *A = calloc((size_t)q->in, sizeof *A), *Bm = calloc((size_t)q->out, sizeof *Bm);
            uint16_t *w0 = malloc((size_t)q->in * 2);
            memcpy(w0, t->data, (size_t)q->in * 2);
            Bm[0] = 1.0f;
            int usable = 0;
            for (int i = 0; i < q->in; i++) {
                float w = fp_bf16_to_f32(w0[i]);
                int ex;
                frexpf(w, &ex);
                if (w == 0 || fabsf(w) == ldexpf(0.5f, ex))
                    continue; /* zero or a power of two (its ulp below differs): leave it */
                float ulp = ldexpf(1.0f, ex - 8);
                A[i] = copysignf(ulp * 0.5f * (1.0f + ldexpf(1.0f, -20)), w);
                usable++;
            }
            fp_lora_adapter ha;
            fp_lora_adapter_init(&ha, 1, 1.0f, 0.0f, "");
            CHECK_OK(fp_lora_adapter_add(&ha, 0, 0, 1, q->in, q->out, 1.0f, A, Bm));
            CHECK_OK(fp_lora_adapter_save(&ha, adir2));
            CHECK_OK(fp_proxy_fuse(llm, proxy, adir2, f.server.pk, &keep, mk2, NULL));
            fp_st_file *mo = NULL;
            CHECK_OK(fp_st_open_dir(&mo, mk2));
            const fp_st_tensor *u = mo ? fp_st_find(mo, nm) : NULL;
            int ok = 0, even = 0;
            for (int i = 0; u && i < q->in; i++) {
                if (A[i] == 0)
                    continue;
                uint16_t got;
                memcpy(&got, (const char *)u->data + 2 * i, 2);
                ok += got == (uint16_t)(w0[i] + 1) && got == bf16_oracle((double)fp_bf16_to_f32(w0[i]) + A[i]);
                even += !(w0[i] & 1);
            }
            printf("halfway: %d of %d elements rounded up correctly (%d of them even, where F32-first rounding "
                   "fails)\n", ok, usable, even);
            CHECK(usable > 4 && even > 0 && ok == usable);
            cmp_stats hs = compare_merge(llm, mk2, &ha, &map, 0);
            CHECK(hs.bad == 0 && hs.merged_tensors == 1);
            fp_st_close(mo);
            fp_lora_adapter_free(&ha);
            free(A);
            free(Bm);
            free(w0);
        }
        fp_st_close(st);
    }

    /* f32: every tensor F32, the double merge to 1e-6, twice the bytes */
    CHECK_OK(fp_proxy_fuse(llm, proxy, adir, f.server.pk, &f32, m32, NULL));
    check_layout(llm, m32, 2);
    cs = compare_merge(llm, m32, &pa, &map, FP_ST_F32);
    printf("f32: %zu merged tensors, max |merged - double merge| %.3g, %zu outside 1e-6\n", cs.merged_tensors,
           cs.maxerr, cs.bad);
    CHECK(cs.merged_tensors == pa.n && cs.bad == 0 && cs.moved > 0);
    {
        cJSON *co = read_json(m32, "config.json");
        const cJSON *td = cJSON_GetObjectItem(co, "torch_dtype");
        CHECK(cJSON_IsString(td) && !strcmp(td->valuestring, "float32"));
        cJSON_Delete(co);
    }

    /* both load; logits against the adapter applied at runtime on the BF16 LLM */
    CHECK_OK(fp_proxy_fuse(llm, proxy, adir, f.server.pk, &keep, NULL, peft));
    int64_t V = f.cfg.vocab;
    int32_t ids[B * T];
    for (int i = 0; i < B * T; i++)
        ids[i] = (int32_t)(fp_test_u32() % (uint32_t)V);
    size_t nv = (size_t)(B * T * V);
    float *base = logits_of(ctx, llm, NULL, ids, V), *rt = logits_of(ctx, llm, peft, ids, V);
    float *lk = logits_of(ctx, mk, NULL, ids, V), *l32 = logits_of(ctx, m32, NULL, ids, V);
    double e32 = fp_test_nmse(l32, rt, nv), ek = fp_test_nmse(lk, rt, nv), moved = fp_test_nmse(base, rt, nv);
    printf("logits NMSE vs runtime adapter: f32 merge %.3g, bf16 merge %.3g (the adapter moves them by %.3g)\n", e32,
           ek, moved);
    CHECKF(e32 <= 1e-10, "f32 merge vs runtime adapter NMSE %g", e32);
    /* bf16 keeps 8 significant bits: each merged weight is off by up to 2^-9
     * relative, so the logits by NMSE ~1e-5; 1e-3 is far below the adapter's effect */
    CHECKF(ek <= 1e-3 && ek < moved * 1e-2, "bf16 merge vs runtime adapter NMSE %g (adapter effect %g)", ek, moved);
    CHECKF(moved > 1e-3, "the adapter barely changes the logits (NMSE %g): not a test", moved);
    free(base);
    free(rt);
    free(lk);
    free(l32);

    /* a sharded proxy through the signed bundle: the proxy's F32 weights split
     * over two shards (same tensors, so the signed fingerprint still holds),
     * packed, unpacked verbatim, verified, and fused to the same merged LLM */
    {
        char sp[1400], cl[1400], mcl[1400], p[1500], cmd[4000];
        snprintf(sp, sizeof sp, "%s/proxy_sharded", f.root);
        snprintf(cl, sizeof cl, "%s/client_proxy", f.root);
        snprintf(mcl, sizeof mcl, "%s/merged_via_bundle", f.root);
        snprintf(cmd, sizeof cmd, "cp -r '%s' '%s'", proxy, sp);
        CHECK(system(cmd) == 0);
        fp_st_file *st = NULL;
        CHECK_OK(fp_st_open_dir(&st, proxy));
        size_t n = st ? fp_st_count(st) : 0;
        fp_st_entry *e = calloc(n ? n : 1, sizeof *e);
        cJSON *idx = cJSON_CreateObject(), *wm = cJSON_CreateObject();
        static const char *PS[2] = {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"};
        for (size_t i = 0; i < n; i++) {
            const fp_st_tensor *t = fp_st_at(st, i);
            e[i] = (fp_st_entry){t->name, t->dtype, t->rank, t->shape, t->data};
            cJSON_AddStringToObject(wm, t->name, PS[i >= n / 2]);
        }
        for (int k = 0; k < 2; k++) {
            snprintf(p, sizeof p, "%s/%s", sp, PS[k]);
            CHECK_OK(fp_st_write(p, e + (k ? n / 2 : 0), k ? n - n / 2 : n / 2, NULL, 0));
        }
        cJSON_AddItemToObject(idx, "weight_map", wm);
        char *text = cJSON_Print(idx);
        snprintf(p, sizeof p, "%s/model.safetensors.index.json", sp);
        CHECK_OK(fp_write_file_atomic(p, text, strlen(text), 0644));
        free(text);
        cJSON_Delete(idx);
        free(e);
        fp_st_close(st);
        snprintf(p, sizeof p, "%s/model.safetensors", sp);
        CHECK(remove(p) == 0);
        fp_proxy_map m2;
        CHECK_OK(fp_proxy_read(&m2, sp, f.server.pk));
        uint8_t *bun = NULL;
        size_t bl = 0;
        CHECK_OK(fp_fed_bundle_pack(&bun, &bl, sp));
        CHECK_OK(fp_fed_bundle_unpack(bun, bl, cl));
        free(bun);
        CHECKF(fp_proxy_read(&m2, cl, f.server.pk) == 0, "the unpacked sharded proxy: %s", fp_errmsg());
        for (int k = 0; k < 2; k++) {
            char a[1500], b[1500];
            snprintf(a, sizeof a, "%s/%s", sp, PS[k]);
            snprintf(b, sizeof b, "%s/%s", cl, PS[k]);
            size_t la = 0, lb = 0;
            char *x = pfx_read(a, &la), *y = pfx_read(b, &lb);
            CHECKF(x && y && la == lb && !memcmp(x, y, la), "shard %s differs after the bundle", PS[k]);
            free(x);
            free(y);
        }
        CHECK_OK(fp_proxy_fuse(llm, cl, adir, f.server.pk, &keep, mcl, NULL));
        CHECK(compare_merge(llm, mcl, &pa, &map, 0).bad == 0);
        for (int s = 0; s < NSHARD; s++) {
            char a[1500], b[1500];
            snprintf(a, sizeof a, "%s/%s", mk, SHARDS[s]);
            snprintf(b, sizeof b, "%s/%s", mcl, SHARDS[s]);
            size_t la = 0, lb = 0;
            char *x = pfx_read(a, &la), *y = pfx_read(b, &lb);
            CHECKF(x && y && la == lb && !memcmp(x, y, la), "merged shard %s differs via the bundle", SHARDS[s]);
            free(x);
            free(y);
        }
    }

    /* a previous merge output is replaced whole */
    {
        char stray[1500];
        snprintf(stray, sizeof stray, "%s/stale.txt", m32);
        CHECK_OK(fp_write_file_atomic(stray, "x", 1, 0644));
        CHECK_OK(fp_proxy_fuse(llm, proxy, adir, f.server.pk, &keep, m32, NULL));
        struct stat sb;
        CHECK(stat(stray, &sb) != 0);
        check_layout(llm, m32, 1);
        CHECK(compare_merge(llm, m32, &pa, &map, 0).bad == 0);
        CHECK(leftovers(m32) == 0);
    }

    /* refusals before anything is written: an unrelated directory, the LLM itself, a file */
    {
        char unrel[1400], keepme[1500];
        snprintf(unrel, sizeof unrel, "%s/my_documents", f.root);
        snprintf(keepme, sizeof keepme, "%s/notes.txt", unrel);
        CHECK_OK(fp_mkdirs(unrel, 0755));
        CHECK_OK(fp_write_file_atomic(keepme, "mine", 4, 0644));
        CHECK_ERR(fp_proxy_fuse(llm, proxy, adir, f.server.pk, &keep, unrel, NULL), FP_EINVAL);
        CHECKF(strstr(fp_errmsg(), "not a previous merge output") != NULL, "message: %s", fp_errmsg());
        size_t l = 0;
        char *c = pfx_read(keepme, &l);
        CHECK(c && l == 4 && !memcmp(c, "mine", 4));
        free(c);
        CHECK(leftovers(unrel) == 0);
        CHECK_ERR(fp_proxy_fuse(llm, proxy, adir, f.server.pk, &keep, llm, NULL), FP_EINVAL);
        CHECK_ERR(fp_proxy_fuse(llm, proxy, adir, f.server.pk, &keep, keepme, NULL), FP_EINVAL);
        fp_fuse_opts bad = {"none", 0.0f, FP_ST_I64};
        CHECK_ERR(fp_proxy_fuse(llm, proxy, adir, f.server.pk, &bad, mk2, NULL), FP_EINVAL);
    }

    /* a failure after every shard is written (the LLM's generation_config.json
     * is unreadable: a directory) leaves no OUT_DIR and no temp directory, and
     * a previous merge output as it was */
    {
        char llm2[1400], gc[1500], fresh[1400], cmd[4000];
        snprintf(llm2, sizeof llm2, "%s/llm_bf16_broken", f.root);
        snprintf(gc, sizeof gc, "%s/generation_config.json", llm2);
        snprintf(fresh, sizeof fresh, "%s/merged_fresh", f.root);
        snprintf(cmd, sizeof cmd, "cp -r '%s' '%s'", llm, llm2);
        CHECK(system(cmd) == 0);
        CHECK_OK(fp_mkdirs(gc, 0755));
        CHECK(fp_proxy_fuse(llm2, proxy, adir, f.server.pk, &keep, fresh, NULL) != 0);
        printf("mid-merge failure: %s\n", fp_errmsg());
        struct stat sb;
        CHECK(stat(fresh, &sb) != 0);
        CHECK(leftovers(fresh) == 0);
        char p1[1500], p2[1500];
        snprintf(p1, sizeof p1, "%s/%s", mk, SHARDS[1]);
        size_t l1 = 0, l2 = 0;
        char *before = pfx_read(p1, &l1);
        CHECK(fp_proxy_fuse(llm2, proxy, adir2, f.server.pk, &keep, mk, NULL) != 0);
        char *after = pfx_read(p1, &l2);
        CHECK(before && after && l1 == l2 && !memcmp(before, after, l1));
        free(before);
        free(after);
        CHECK(leftovers(mk) == 0);
        snprintf(p2, sizeof p2, "%s/%s", mk, SHARDS[0]);
        CHECK(stat(p2, &sb) == 0);
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", llm2);
        CHECK(system(cmd) == 0);
    }
    fp_lora_adapter_free(&pa);
    pfx_done(&f);
    fp_test_ctx_done(ctx);
    return fp_test_report("fuse_sharded");
}
