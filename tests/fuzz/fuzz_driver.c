/* Plain driver for the message fuzz target: runs LLVMFuzzerTestOneInput over
 * the generated corpus (valid and mutated messages) so every build exercises
 * the decoder without libFuzzer, and checks that valid messages decode and
 * mutated ones are refused.
 *   fuzz_driver               run the generated corpus
 *   fuzz_driver FILE...       also run these inputs (e.g. crash-* from libFuzzer)
 *   fuzz_driver --write DIR   write the corpus to DIR (seeds for scripts/fuzz.sh) */
#include <stdlib.h>
#include <string.h>

#include "fedproxy/fileio.h"
#include "fedproxy/msg.h"
#include "fp_test.h"
#include "fuzz_msg.h"

static const char *write_dir;
static unsigned long n_inputs;

static void run_one(void *ctx, const uint8_t *p, size_t n, int expect)
{
    n_inputs++;
    if (write_dir) {
        char path[4200];
        snprintf(path, sizeof path, "%s/seed-%06lu", write_dir, n_inputs);
        if (fp_write_file_atomic(path, p, n, 0644) != 0)
            fprintf(stderr, "%s\n", fp_errmsg());
        return;
    }
    LLVMFuzzerTestOneInput(p, n);
    if (expect < 0 || n == 0 || p[0] != FUZZ_DECODE)
        return;
    fp_msg m;
    int rc = fp_msg_decode(&m, p + 1, n - 1, 1 << 20);
    if (expect == 1)
        CHECKF(rc == 0, "input %lu: valid message refused: %s", n_inputs, fp_errmsg());
    else
        CHECKF(rc == FP_EFORMAT || rc == FP_ECRYPTO, "input %lu (%zu bytes): mutated message rc %d",
               n_inputs, n, rc);
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--write") && i + 1 < argc) {
            write_dir = argv[++i];
            if (fp_mkdirs(write_dir, 0755) != 0) {
                fprintf(stderr, "%s\n", fp_errmsg());
                return 1;
            }
            continue;
        }
        void *data = NULL;
        size_t len = 0;
        if (fp_read_file(&data, &len, argv[i], 1 << 24) != 0) {
            fprintf(stderr, "%s\n", fp_errmsg());
            return 1;
        }
        LLVMFuzzerTestOneInput(data, len);
        free(data);
        fp_test_passed++;
    }
    fuzz_msg_corpus(run_one, NULL);
    if (write_dir) {
        printf("wrote %lu seeds to %s\n", n_inputs, write_dir);
        return 0;
    }
    CHECK(n_inputs > 1000);
    printf("ran %lu inputs through LLVMFuzzerTestOneInput\n", n_inputs);
    return fp_test_report("test_fuzz_msg");
}
