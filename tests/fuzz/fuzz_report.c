/* The three harness symbols fuzz_driver.c uses, for the FP_FUZZ seed/replay
 * binary, which does not link libfedproxy (and so not the full harness, whose
 * Vulkan helpers need it). Same behaviour as tests/harness/fp_test.c. */
#include <stdio.h>

int fp_test_passed, fp_test_failed;

int fp_test_report(const char *name);
int fp_test_report(const char *name)
{
    printf("%s: %d passed, %d failed\n", name, fp_test_passed, fp_test_failed);
    fflush(stdout);
    return fp_test_failed == 0 && fp_test_passed > 0 ? 0 : 1;
}
