/* fp_proxy_compress without distillation: the proxy's layers are its LLM
 * layers bit for bit, proxy.json verifies, and every kind of tampering
 * (proxy.json, its signature, the weights, config.json, another signer, an
 * unsigned extra key) is refused with a message naming what is wrong. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fedproxy/model_config.h"
#include "fedproxy/safetensors.h"
#include "proxy_fixture.h"

static fp_proxy_map g_map;

/* refused with code and a message containing `what` */
static void expect_refused(const char *dir, const unsigned char *pk, int code, const char *what)
{
    int rc = fp_proxy_read(&g_map, dir, pk);
    CHECKF(rc == code, "%s: read gave %d, want %d (%s)", what, rc, code, fp_errmsg());
    CHECKF(strstr(fp_errmsg(), what) != NULL, "message '%s' does not name '%s'", fp_errmsg(), what);
}

/* a copy of src with byte `at` of file `name` replaced by `to` (at < 0: from the end) */
static void tamper(const char *src, const char *dst, const char *name, long at, int to)
{
    pfx_copy_dir(src, dst);
    char path[2048];
    snprintf(path, sizeof path, "%s/%s", dst, name);
    size_t len = 0;
    char *d = pfx_read(path, &len);
    CHECK(d != NULL);
    if (!d)
        return;
    size_t i = at >= 0 ? (size_t)at : len - (size_t)(-at);
    CHECK(i < len && d[i] != (char)to);
    d[i] = (char)to;
    CHECK_OK(fp_write_file_atomic(path, d, len, 0644));
    free(d);
}

/* offset of the first char c after the first occurrence of key in dir/proxy.json */
static long find_after(const char *dir, const char *key, const char *chars)
{
    char path[2048];
    snprintf(path, sizeof path, "%s/proxy.json", dir);
    char *d = pfx_read(path, NULL);
    const char *k = d ? strstr(d, key) : NULL;
    CHECKF(k != NULL, "proxy.json has no %s", key);
    long off = k ? (long)(strpbrk(k + strlen(key), chars) - d) : 0;
    free(d);
    return off;
}

int main(void)
{
    fp_test_seed(3);
    fp_ctx *ctx = fp_test_ctx(NULL);
    pfx f;
    pfx_init(&f, "proxy_compress", 8, ctx);
    char out[1400], t[1400];
    snprintf(out, sizeof out, "%s/proxy", f.root);
    snprintf(t, sizeof t, "%s/tampered", f.root);
    fp_compress_opts o;
    fp_compress_opts_default(&o);
    o.calib = f.calib;
    o.middle = 2;
    o.seq = 16;
    o.batch = 2;
    o.quiet = 1;
    CHECK_OK(fp_proxy_compress(ctx, f.llm, out, &o, &f.server));

    fp_proxy_map m;
    CHECK_OK(fp_proxy_read(&m, out, f.server.pk));
    CHECK(m.llm_layers == 8 && m.proxy_layers == 6 && !strcmp(m.select, "influence") && m.has_scores);
    CHECK(m.llm_hidden == f.cfg.hidden && m.llm_vocab == f.cfg.vocab && m.distill.steps == 0);
    unsigned char fpr[32];
    CHECK_OK(fp_model_fingerprint(fpr, f.llm));
    CHECK(!memcmp(fpr, m.llm_fingerprint, 32));
    CHECK(!memcmp(m.server_key, f.server.pk, 32));
    /* the ends kept; the kept middle layers score at least as high as the dropped ones */
    CHECK(m.layers[0].llm == 0 && m.layers[1].llm == 1 && m.layers[4].llm == 6 && m.layers[5].llm == 7);
    for (int l = 2; l < 6; l++) {
        int kept = l == m.layers[2].llm || l == m.layers[3].llm;
        for (int k = 2; k < 6 && kept; k++)
            if (k != m.layers[2].llm && k != m.layers[3].llm)
                CHECKF(m.scores[l] >= m.scores[k], "kept layer %d (%g) scores below dropped %d (%g)", l, m.scores[l],
                       k, m.scores[k]);
    }
    for (int l = 0; l < 8; l++)
        CHECKF(m.scores[l] > 0 && m.scores[l] < 2, "score of layer %d is %g", l, m.scores[l]);

    /* every proxy tensor equals its LLM tensor bit for bit */
    fp_st_file *ps = NULL, *ls = NULL;
    CHECK_OK(fp_st_open_dir(&ps, out));
    CHECK_OK(fp_st_open_dir(&ls, f.llm));
    CHECK(fp_st_count(ps) == 3 + 6 * 9);
    int same = 1;
    for (size_t i = 0; ps && ls && i < fp_st_count(ps); i++) {
        const fp_st_tensor *a = fp_st_at(ps, i);
        char nm[256];
        int li = -1, pos = 0;
        if (sscanf(a->name, "model.layers.%d.%n", &li, &pos) == 1 && pos > 0)
            snprintf(nm, sizeof nm, "model.layers.%d.%s", m.layers[li].llm, a->name + pos);
        else
            snprintf(nm, sizeof nm, "%s", a->name);
        const fp_st_tensor *b = fp_st_find(ls, nm);
        int eq = b && a->dtype == b->dtype && a->nbytes == b->nbytes && !memcmp(a->data, b->data, a->nbytes);
        CHECKF(eq, "proxy %s differs from LLM %s", a->name, nm);
        same &= eq;
    }
    CHECK(same);
    fp_st_close(ps);
    fp_st_close(ls);
    fp_model_config mc;
    char path[2048];
    snprintf(path, sizeof path, "%s/config.json", out);
    CHECK_OK(fp_model_config_load(&mc, path));
    CHECK(mc.num_hidden_layers == 6 && mc.hidden_size == f.cfg.hidden);
    fp_model *pm = NULL;
    CHECK_OK(fp_model_load_dir(&pm, ctx, out));
    fp_model_free(pm);
    CHECK_OK(fp_proxy_read(&m, out, NULL)); /* inspection: the key inside the file */

    /* tampering */
    tamper(out, t, "proxy.json", find_after(out, "\"scores\"", "0123456789") + 2, '9');
    expect_refused(t, f.server.pk, FP_ECRYPTO, "signature");
    tamper(out, t, "proxy.json", find_after(out, "\"llm\":", "0123456789"), '5');
    expect_refused(t, f.server.pk, FP_ECRYPTO, "signature");
    {
        long at = find_after(out, "\"signature\"", "0123456789abcdef");
        char path2[2048];
        snprintf(path2, sizeof path2, "%s/proxy.json", out);
        char *d = pfx_read(path2, NULL);
        int to = d[at] == '0' ? '1' : '0';
        free(d);
        tamper(out, t, "proxy.json", at, to);
        expect_refused(t, f.server.pk, FP_ECRYPTO, "signature");
    }
    tamper(out, t, "model.safetensors", -1, 0x5a);
    expect_refused(t, f.server.pk, FP_ECRYPTO, "model.safetensors");
    tamper(out, t, "config.json", 0, ' ');
    expect_refused(t, f.server.pk, FP_ECRYPTO, "config.json");
    tamper(out, t, "tokenizer.json", -2, ' ');
    expect_refused(t, f.server.pk, FP_ECRYPTO, "tokenizer.json");
    tamper(out, t, "proxy.json", 0, '[');
    expect_refused(t, f.server.pk, FP_EFORMAT, "proxy.json");
    {
        /* an unsigned extra key */
        pfx_copy_dir(out, t);
        snprintf(path, sizeof path, "%s/proxy.json", t);
        size_t len = 0;
        char *d = pfx_read(path, &len);
        char *nd = malloc(len + 32);
        nd[0] = '{';
        memcpy(nd + 1, "\"note\": \"hi\",", 13);
        memcpy(nd + 14, d + 1, len - 1);
        CHECK_OK(fp_write_file_atomic(path, nd, len + 13, 0644));
        free(d);
        free(nd);
        expect_refused(t, f.server.pk, FP_EFORMAT, "unknown key 'note'");
    }
    /* the right file, the wrong expected key; and a proxy signed by another key */
    expect_refused(out, f.other.pk, FP_ECRYPTO, "not the expected server key");
    char out2[1400];
    snprintf(out2, sizeof out2, "%s/proxy_other", f.root);
    CHECK_OK(fp_proxy_compress(ctx, f.llm, out2, &o, &f.other));
    expect_refused(out2, f.server.pk, FP_ECRYPTO, "not the expected server key");
    /* another signer's proxy.json over the server's weights: refused too */
    snprintf(path, sizeof path, "%s/proxy.json", out2);
    char *forged = pfx_read(path, NULL);
    pfx_copy_dir(out, t);
    snprintf(path, sizeof path, "%s/proxy.json", t);
    CHECK_OK(fp_write_file_atomic(path, forged, strlen(forged), 0644));
    free(forged);
    expect_refused(t, f.server.pk, FP_ECRYPTO, "not the expected server key");
    snprintf(path, sizeof path, "%s/proxy.json", t);
    remove(path);
    CHECK(fp_proxy_read(&m, t, f.server.pk) != 0);

    /* uniform selection: L = 8, middle 2..5, m = 2: stride 3 -> layers 2 and 5; no scores */
    o.select = "uniform";
    o.calib = NULL;
    CHECK_OK(fp_proxy_compress(ctx, f.llm, out2, &o, &f.server));
    CHECK_OK(fp_proxy_read(&m, out2, f.server.pk));
    CHECK(m.proxy_layers == 6 && m.layers[2].llm == 2 && m.layers[3].llm == 5 && !m.has_scores);
    CHECK(m.layers[2].span_first == 2 && m.layers[2].span_last == 4 && m.layers[3].span_last == 5);
    /* bad arguments */
    o.select = "influence";
    CHECK_ERR(fp_proxy_compress(ctx, f.llm, out2, &o, &f.server), FP_EINVAL); /* no calibration text */
    o.calib = f.calib;
    o.middle = 5;
    CHECK_ERR(fp_proxy_compress(ctx, f.llm, out2, &o, &f.server), FP_EINVAL);
    o.middle = 2;
    o.distill_steps = 3;
    CHECK_ERR(fp_proxy_compress(ctx, f.llm, out2, &o, &f.server), FP_EINVAL); /* no distillation text */
    o.distill_steps = 0;
    o.select = "best";
    CHECK_ERR(fp_proxy_compress(ctx, f.llm, out2, &o, &f.server), FP_EINVAL);

    pfx_done(&f);
    fp_test_ctx_done(ctx);
    return fp_test_report("proxy_compress");
}
