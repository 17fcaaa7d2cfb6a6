/* safetensors: round trip through the writer, every malformed-file kind built
 * byte by byte, sharded sets, and the half-precision conversions. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fedproxy/fileio.h"
#include "fedproxy/safetensors.h"
#include "fp_test.h"

static char dir[4096];

static const char *pathf(const char *name)
{
    static char p[2][4200];
    static int k;
    k ^= 1;
    snprintf(p[k], sizeof p[k], "%s/%s", dir, name);
    return p[k];
}

/* Writes an 8-byte little-endian length, the header text and data bytes. */
static void write_raw(const char *path, const char *hdr, const void *data, size_t data_len)
{
    size_t hl = strlen(hdr);
    unsigned char *buf = malloc(8 + hl + data_len + 1);
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(buf + 8, hdr, hl);
    if (data_len)
        memcpy(buf + 8 + hl, data, data_len);
    CHECK_OK(fp_write_file_atomic(path, buf, 8 + hl + data_len, 0644));
    free(buf);
}

/* Expect open to fail with FP_EFORMAT and the message to contain want. */
static void expect_bad(const char *hdr, size_t data_len, const char *want)
{
    unsigned char data[256] = {0};
    const char *p = pathf("bad.safetensors");
    write_raw(p, hdr, data, data_len);
    fp_st_file *f = (fp_st_file *)1;
    CHECK_ERR(fp_st_open(&f, p), FP_EFORMAT);
    CHECK(f == NULL);
    CHECKF(strstr(fp_errmsg(), want) != NULL, "message '%s' lacks '%s'", fp_errmsg(), want);
    CHECKF(strstr(fp_errmsg(), "bad.safetensors") != NULL, "message '%s' lacks the file", fp_errmsg());
}

static void test_round_trip(void)
{
    float a[6] = {1, -2, 3.5f, 0, 1e-3f, 65504};
    uint16_t b[3] = {0x3c00, 0xc000, 0x7e00}; /* f16 1, -2, nan */
    uint16_t c[5] = {0x3f80, 0x4040, 0xff80, 0x0001, 0x8000};
    int64_t sa[2] = {2, 3}, sb[1] = {3}, sc[2] = {5, 1};
    int64_t s0[1] = {0};
    fp_st_entry e[4] = {
        {"h.weight", FP_ST_F16, 1, sb, b},
        {"a.weight", FP_ST_F32, 2, sa, a},
        {"empty", FP_ST_F32, 1, s0, NULL},
        {"c.bf", FP_ST_BF16, 2, sc, c},
    };
    const char *meta[4] = {"format", "pt", "note", "quote\"back\\slash"};
    const char *p = pathf("rt.safetensors");
    CHECK_OK(fp_st_write(p, e, 4, meta, 2));

    /* Header padded to 8 with spaces, starting with the metadata. */
    void *raw;
    size_t rlen;
    CHECK_OK(fp_read_file(&raw, &rlen, p, 1 << 20));
    const unsigned char *r = raw;
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--)
        hl = (hl << 8) | r[i];
    CHECK(hl % 8 == 0);
    CHECK(rlen == 8 + hl + 24 + 6 + 10); /* f32 6x4, f16 3x2, bf16 5x2 */
    CHECK(memcmp(r + 8, "{\"__metadata__\":{\"format\":\"pt\"", 30) == 0);
    CHECK(r[8 + hl - 1] == ' ' || r[8 + hl - 1] == '}');
    /* widest first: the f32 tensor's bytes come first in the data section */
    CHECK(memcmp(r + 8 + hl, a, 24) == 0);
    free(raw);

    fp_st_file *f;
    CHECK_OK(fp_st_open(&f, p));
    CHECK(fp_st_count(f) == 4);
    const fp_st_tensor *t = fp_st_find(f, "a.weight");
    CHECK(t && t->dtype == FP_ST_F32 && t->rank == 2 && t->shape[0] == 2 && t->shape[1] == 3);
    CHECK(t && t->numel == 6 && t->nbytes == 24 && memcmp(t->data, a, 24) == 0);
    t = fp_st_find(f, "h.weight");
    CHECK(t && t->dtype == FP_ST_F16 && t->rank == 1 && t->shape[0] == 3 && memcmp(t->data, b, 6) == 0);
    float hf[3];
    CHECK_OK(fp_st_to_f32(hf, 3, t));
    CHECK(hf[0] == 1.0f && hf[1] == -2.0f && isnan(hf[2]));
    CHECK_ERR(fp_st_to_f32(hf, 2, t), FP_ESHAPE);
    t = fp_st_find(f, "c.bf");
    float cf[5];
    CHECK_OK(fp_st_to_f32(cf, 5, t));
    CHECK(cf[0] == 1.0f && cf[1] == 3.0f && isinf(cf[2]) && cf[2] < 0);
    CHECK(cf[3] == ldexpf(1.0f, -133) && cf[4] == 0.0f && signbit(cf[4]));
    t = fp_st_find(f, "empty");
    CHECK(t && t->numel == 0 && t->nbytes == 0);
    CHECK(fp_st_find(f, "nope") == NULL);
    CHECK(fp_st_metadata_count(f) == 2);
    CHECK(fp_st_metadata(f, "format") && !strcmp(fp_st_metadata(f, "format"), "pt"));
    CHECK(fp_st_metadata(f, "note") && !strcmp(fp_st_metadata(f, "note"), "quote\"back\\slash"));
    size_t seen = 0;
    for (size_t i = 0; i < fp_st_count(f); i++)
        seen += fp_st_find(f, fp_st_at(f, i)->name) == fp_st_at(f, i);
    CHECK(seen == 4);
    fp_st_close(f);

    /* writer refuses bad input */
    int64_t neg[1] = {-1};
    fp_st_entry bad = {"x", FP_ST_F32, 1, neg, a};
    CHECK_ERR(fp_st_write(pathf("w.safetensors"), &bad, 1, NULL, 0), FP_EINVAL);
    fp_st_entry dup[2] = {{"x", FP_ST_F32, 1, sb, a}, {"x", FP_ST_F32, 1, sb, a}};
    CHECK_ERR(fp_st_write(pathf("w.safetensors"), dup, 2, NULL, 0), FP_EINVAL);
    struct stat st;
    CHECK(stat(pathf("w.safetensors"), &st) != 0); /* nothing left behind */
}

static void test_bad_files(void)
{
    /* A valid file first, so the cases below differ from it in one thing. */
    const char *good = "{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    unsigned char data[8] = {0};
    const char *p = pathf("good.safetensors");
    write_raw(p, good, data, 8);
    fp_st_file *f;
    CHECK_OK(fp_st_open(&f, p));
    fp_st_close(f);

    /* Truncated at several lengths: inside the length prefix, inside the
     * header, inside the data. */
    void *raw;
    size_t rlen;
    CHECK_OK(fp_read_file(&raw, &rlen, p, 4096));
    size_t cuts[] = {0, 1, 7, 8, 9, 20, rlen - 8, rlen - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        const char *q = pathf("trunc.safetensors");
        CHECK_OK(fp_write_file_atomic(q, raw, cuts[i], 0644));
        f = (fp_st_file *)1;
        CHECK_ERR(fp_st_open(&f, q), FP_EFORMAT);
        CHECK(f == NULL);
        CHECKF(strstr(fp_errmsg(), "trunc.safetensors") != NULL, "cut %zu: %s", cuts[i], fp_errmsg());
    }
    /* Header length larger than the file. */
    unsigned char *big = malloc(rlen);
    memcpy(big, raw, rlen);
    big[0] = (unsigned char)(rlen);
    big[1] = 0x01;
    CHECK_OK(fp_write_file_atomic(pathf("hl.safetensors"), big, rlen, 0644));
    CHECK_ERR(fp_st_open(&f, pathf("hl.safetensors")), FP_EFORMAT);
    CHECK(strstr(fp_errmsg(), "header length") != NULL);
    /* Header length beyond the 100 MiB limit. */
    memset(big, 0, 8);
    big[7] = 0x10;
    CHECK_OK(fp_write_file_atomic(pathf("hl.safetensors"), big, rlen, 0644));
    CHECK_ERR(fp_st_open(&f, pathf("hl.safetensors")), FP_EFORMAT);
    CHECK(strstr(fp_errmsg(), "limit") != NULL);
    free(big);
    free(raw);

    expect_bad("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,12]}}", 8, "past the data");
    expect_bad("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 8, "past the data");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
               8, "overlap");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
               12, "overlap");
    expect_bad("{\"t\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 16, "needs 12 bytes");
    expect_bad("{\"t\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[0,4]}}", 8, "'t' spans 4");
    expect_bad("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
               "\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
               8, "appears twice");
    expect_bad("{\"t\":{\"dtype\":\"F8\",\"shape\":[2],\"data_offsets\":[0,2]}}", 8, "dtype 'F8'");
    expect_bad("{\"t\":{\"dtype\":\"float32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "dtype");
    expect_bad("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}", 8, "not valid JSON");
    expect_bad("not json at all", 8, "not valid JSON");
    expect_bad("[1,2,3]", 8, "not a JSON object");
    expect_bad("{\"t\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8,
               "shape[0] is not a non-negative integer");
    expect_bad("{\"t\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,8]}}", 8, "shape[0]");
    expect_bad("{\"t\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,2],\"data_offsets\":[0,8]}}", 8,
               "rank 9");
    expect_bad("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, "begin 8 > end 0");
    expect_bad("{\"t\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, "missing 'data_offsets'");
    expect_bad("{\"t\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "missing 'dtype'");
    expect_bad("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", 8, "data_offsets");
    expect_bad("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"x\":1}}", 8,
               "unexpected key 'x'");
    expect_bad("{\"t\":[1]}", 8, "'t': entry is not a JSON object");
    expect_bad("{\"__metadata__\":{\"k\":1}}", 8, "__metadata__ value of 'k'");
    expect_bad("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}} x", 8, "trailing");
    expect_bad("{\"t\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}}", 8,
               "overflow");

    /* A NUL inside the header. */
    unsigned char nul[8 + 8 + 4] = {8, 0, 0, 0, 0, 0, 0, 0, '{', '}', 0, ' ', ' ', ' ', ' ', ' '};
    CHECK_OK(fp_write_file_atomic(pathf("nul.safetensors"), nul, sizeof nul, 0644));
    CHECK_ERR(fp_st_open(&f, pathf("nul.safetensors")), FP_EFORMAT);
    CHECK(strstr(fp_errmsg(), "NUL") != NULL);

    /* Not found is not a format error. */
    CHECK_ERR(fp_st_open(&f, pathf("missing.safetensors")), FP_ENOTFOUND);

    /* Zero-length tensors may sit anywhere, even at another tensor's offset. */
    write_raw(pathf("z.safetensors"),
              "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
              "\"z\":{\"dtype\":\"BF16\",\"shape\":[0,3],\"data_offsets\":[4,4]},"
              "\"__metadata__\":null}",
              data, 8);
    CHECK_OK(fp_st_open(&f, pathf("z.safetensors")));
    CHECK(fp_st_count(f) == 2 && fp_st_metadata_count(f) == 0);
    fp_st_close(f);
}

static void write_shard(const char *name, const char *tname, float v)
{
    float d[2] = {v, v + 1};
    int64_t s[1] = {2};
    fp_st_entry e = {tname, FP_ST_F32, 1, s, d};
    CHECK_OK(fp_st_write(pathf(name), &e, 1, NULL, 0));
}

static void write_index(const char *json)
{
    CHECK_OK(fp_write_file_atomic(pathf("model.safetensors.index.json"), json, strlen(json), 0644));
}

static void test_shards(void)
{
    write_shard("model-00001-of-00002.safetensors", "a", 1);
    float d[4] = {5, 6, 7, 8};
    int64_t s[1] = {2};
    fp_st_entry e[2] = {{"b", FP_ST_F32, 1, s, d}, {"c", FP_ST_F32, 1, s, d + 2}};
    CHECK_OK(fp_st_write(pathf("model-00002-of-00002.safetensors"), e, 2, NULL, 0));
    write_index("{\"metadata\":{\"total_size\":24},\"weight_map\":{"
                "\"a\":\"model-00001-of-00002.safetensors\","
                "\"b\":\"model-00002-of-00002.safetensors\","
                "\"c\":\"model-00002-of-00002.safetensors\"}}");
    fp_st_file *f;
    CHECK_OK(fp_st_open_dir(&f, dir));
    CHECK(fp_st_count(f) == 3);
    const fp_st_tensor *t = fp_st_find(f, "c");
    CHECK(t && ((const float *)t->data)[0] == 7.0f);
    t = fp_st_find(f, "a");
    CHECK(t && ((const float *)t->data)[1] == 2.0f);
    /* the files behind it, in index order, with their tensors' ranges */
    size_t lo = 9, hi = 9;
    CHECK(fp_st_file_count(f) == 2);
    const char *p0 = fp_st_file_at(f, 0, &lo, &hi);
    CHECK(p0 && strstr(p0, "model-00001-of-00002.safetensors") && lo == 0 && hi == 1);
    CHECK(!strcmp(fp_st_at(f, lo)->name, "a"));
    const char *p1 = fp_st_file_at(f, 1, &lo, &hi);
    CHECK(p1 && strstr(p1, "model-00002-of-00002.safetensors") && lo == 1 && hi == 3);
    CHECK(fp_st_file_at(f, 2, &lo, &hi) == NULL);
    fp_st_close(f);

    /* A name indexed in a shard that lacks it. */
    write_index("{\"weight_map\":{\"a\":\"model-00001-of-00002.safetensors\","
                "\"b\":\"model-00001-of-00002.safetensors\","
                "\"c\":\"model-00002-of-00002.safetensors\"}}");
    CHECK_ERR(fp_st_open_dir(&f, dir), FP_EFORMAT);
    CHECK(strstr(fp_errmsg(), "'b'") && strstr(fp_errmsg(), "model-00001-of-00002"));
    write_index("{\"weight_map\":{\"a\":\"model-00001-of-00002.safetensors\","
                "\"zz\":\"model-00002-of-00002.safetensors\"}}");
    CHECK_ERR(fp_st_open_dir(&f, dir), FP_EFORMAT);
    CHECK(strstr(fp_errmsg(), "'zz'") && strstr(fp_errmsg(), "not in that shard"));
    /* A missing shard file. */
    write_index("{\"weight_map\":{\"a\":\"model-00001-of-00002.safetensors\","
                "\"q\":\"model-00003-of-00003.safetensors\"}}");
    CHECK_ERR(fp_st_open_dir(&f, dir), FP_ENOTFOUND);
    CHECK(strstr(fp_errmsg(), "model-00003-of-00003.safetensors") != NULL);
    /* A shard outside the directory. */
    write_index("{\"weight_map\":{\"a\":\"../x.safetensors\"}}");
    CHECK_ERR(fp_st_open_dir(&f, dir), FP_EFORMAT);
    /* The same name in two shards. */
    write_shard("dup.safetensors", "a", 3);
    write_index("{\"weight_map\":{\"a\":\"model-00001-of-00002.safetensors\","
                "\"b\":\"dup.safetensors\"}}");
    CHECK_ERR(fp_st_open_dir(&f, dir), FP_EFORMAT);
    CHECK(strstr(fp_errmsg(), "'a'") && strstr(fp_errmsg(), "another shard"));
    write_index("{\"weight_map\":[]}");
    CHECK_ERR(fp_st_open_dir(&f, dir), FP_EFORMAT);
    CHECK(strstr(fp_errmsg(), "weight_map") != NULL);
}

static uint32_t bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static void test_half(void)
{
    /* f16 encodings computed by hand from the binary16 layout. */
    CHECK(fp_f32_to_f16(1.0f) == 0x3c00);
    CHECK(fp_f32_to_f16(-2.0f) == 0xc000);
    CHECK(fp_f32_to_f16(65504.0f) == 0x7bff);
    CHECK(fp_f32_to_f16(65519.0f) == 0x7bff);    /* below the halfway point */
    CHECK(fp_f32_to_f16(65520.0f) == 0x7c00);    /* halfway, odd mantissa: up to inf */
    CHECK(fp_f32_to_f16(1e9f) == 0x7c00);
    CHECK(fp_f32_to_f16(-INFINITY) == 0xfc00);
    CHECK((fp_f32_to_f16(NAN) & 0x7c00) == 0x7c00 && (fp_f32_to_f16(NAN) & 0x3ff) != 0);
    CHECK(fp_f32_to_f16(ldexpf(1, -24)) == 0x0001);           /* smallest subnormal */
    CHECK(fp_f32_to_f16(ldexpf(1, -25)) == 0x0000);           /* tie to even: 0 */
    CHECK(fp_f32_to_f16(ldexpf(1.5f, -25)) == 0x0001);        /* above the tie */
    CHECK(fp_f32_to_f16(ldexpf(3, -25)) == 0x0002);           /* 1.5 ulp: tie to even 2 */
    CHECK(fp_f32_to_f16(ldexpf(1, -14)) == 0x0400);           /* smallest normal */
    CHECK(fp_f32_to_f16(ldexpf(0x3ff + 0.5f, -24)) == 0x0400); /* rounds into normal */
    CHECK(fp_f32_to_f16(1.0f + ldexpf(1, -11)) == 0x3c00);    /* tie, even: down */
    CHECK(fp_f32_to_f16(1.0f + 3 * ldexpf(1, -11)) == 0x3c02); /* tie, odd: up */
    CHECK(fp_f32_to_f16(-0.0f) == 0x8000);
    CHECK(fp_f16_to_f32(0x0001) == ldexpf(1, -24));
    CHECK(fp_f16_to_f32(0x7bff) == 65504.0f);
    CHECK(isinf(fp_f16_to_f32(0x7c00)) && isnan(fp_f16_to_f32(0x7e01)));
    CHECK(bits(fp_f16_to_f32(0x7d01)) == 0x7fa02000u); /* nan payload kept */
    /* every finite f16 survives f16 -> f32 -> f16 */
    int bad = 0;
    for (uint32_t h = 0; h < 0x10000; h++)
        if ((h & 0x7c00) != 0x7c00 && fp_f32_to_f16(fp_f16_to_f32((uint16_t)h)) != h)
            bad++;
    CHECK(bad == 0);
    /* bf16 */
    CHECK(fp_f32_to_bf16(1.0f) == 0x3f80);
    CHECK(fp_f32_to_bf16(from_bits(0x3f808000u)) == 0x3f80); /* tie, even: down */
    CHECK(fp_f32_to_bf16(from_bits(0x3f818000u)) == 0x3f82); /* tie, odd: up */
    CHECK(fp_f32_to_bf16(from_bits(0x3f808001u)) == 0x3f81);
    CHECK(fp_f32_to_bf16(from_bits(0x7f7fffffu)) == 0x7f80); /* FLT_MAX rounds to inf */
    CHECK(fp_f32_to_bf16(from_bits(0x7f800001u)) != 0x7f80); /* nan stays nan */
    CHECK((fp_f32_to_bf16(from_bits(0x7f800001u)) & 0x7f80) == 0x7f80);
    CHECK(fp_bf16_to_f32(0xc040) == -3.0f);
    CHECK(fp_st_dtype_parse("BF16") == FP_ST_BF16 && fp_st_dtype_size(FP_ST_I64) == 8);
    CHECK(fp_st_dtype_parse("bf16") == 0 && fp_st_dtype_name(99) == NULL);
}

int main(void)
{
    snprintf(dir, sizeof dir, "%s", fp_test_tmpdir("safetensors"));
    test_round_trip();
    test_bad_files();
    test_shards();
    test_half();
    return fp_test_report("test_safetensors");
}
