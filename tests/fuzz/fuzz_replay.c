/* Plain driver for the fuzz_formats targets: runs LLVMFuzzerTestOneInput over
 * the checked-in seeds (tests/fuzz/seeds/<target>) and deterministic
 * mutations of them (byte flips, truncations, insertions, splices), so every
 * build, and the ASan+UBSan build, exercises the parsers without libFuzzer.
 *   fuzz_replay_<target>            seeds + mutations
 *   fuzz_replay_<target> FILE...    also replay these inputs (crash-* files) */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fedproxy/fileio.h"
#include "fp_test.h"
#include "fuzz_formats.h"

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)rng;
}

static unsigned long runs;

static void mutate_and_run(const uint8_t *p, size_t n, const uint8_t *other, size_t on)
{
    uint8_t *b = malloc(n + 64);
    for (int k = 0; k < 400; k++) {
        size_t m = n;
        memcpy(b, p, n);
        switch (k % 5) {
        case 0: /* flip a few bytes */
            for (int j = 0; j < 1 + (int)(rnd() % 4) && m; j++)
                b[rnd() % m] ^= (uint8_t)(1u << (rnd() % 8));
            break;
        case 1: /* truncate */
            m = n ? rnd() % n : 0;
            break;
        case 2: { /* insert bytes that parsers care about */
            static const char ins[] = "{}[]\",:0-9e\\\x00\xff";
            size_t at = m ? rnd() % m : 0, c = 1 + rnd() % 8;
            memmove(b + at + c, b + at, m - at);
            for (size_t j = 0; j < c; j++)
                b[at + j] = (uint8_t)ins[rnd() % (sizeof ins - 1)];
            m += c;
            break;
        }
        case 3: /* overwrite a byte with an extreme value */
            if (m)
                b[rnd() % m] = (uint8_t)(rnd() % 2 ? 0xff : 0x00);
            break;
        default: { /* splice in the head of another seed */
            size_t at = m ? rnd() % m : 0, c = on < 48 ? on : 48;
            memcpy(b + at, other, c < n + 64 - at ? c : n + 64 - at);
            m = at + c > m ? (at + c <= n + 64 ? at + c : n + 64) : m;
            break;
        }
        }
        LLVMFuzzerTestOneInput(b, m);
        runs++;
    }
    free(b);
}

int main(int argc, char **argv)
{
    setenv("FP_QUIET", "1", 1); /* refused inputs are the point; their warnings are noise */
    for (int i = 1; i < argc; i++) {
        void *d = NULL;
        size_t len = 0;
        if (fp_read_file(&d, &len, argv[i], 1 << 24) != 0) {
            fprintf(stderr, "%s\n", fp_errmsg());
            return 1;
        }
        LLVMFuzzerTestOneInput(d, len);
        free(d);
        runs++;
    }
    DIR *dir = opendir(FUZZ_SEED_DIR);
    CHECKF(dir != NULL, "no seed directory %s", FUZZ_SEED_DIR);
    uint8_t *seeds[64];
    size_t lens[64], ns = 0;
    struct dirent *e;
    while (dir && (e = readdir(dir)) && ns < 64) {
        if (e->d_name[0] == '.')
            continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", FUZZ_SEED_DIR, e->d_name);
        void *d = NULL;
        if (fp_read_file(&d, &lens[ns], path, 1 << 24) == 0)
            seeds[ns++] = d;
    }
    if (dir)
        closedir(dir);
    CHECKF(ns > 0, "no seeds in %s", FUZZ_SEED_DIR);
    for (size_t i = 0; i < ns; i++) {
        LLVMFuzzerTestOneInput(seeds[i], lens[i]);
        mutate_and_run(seeds[i], lens[i], seeds[(i + 1) % ns], lens[(i + 1) % ns]);
    }
    for (size_t i = 0; i < ns; i++)
        free(seeds[i]);
    CHECK(runs >= 400 * ns);
    printf("ran %lu inputs from %zu seeds in %s\n", runs, ns, FUZZ_SEED_DIR);
    return fp_test_report("fuzz_replay");
}
