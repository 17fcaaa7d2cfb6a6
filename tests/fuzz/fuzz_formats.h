/* Target selectors for fuzz_formats.c (and its plain replay driver). */
#ifndef FP_FUZZ_FORMATS_H
#define FP_FUZZ_FORMATS_H

#include <stddef.h>
#include <stdint.h>

#define FUZZ_SAFETENSORS 1
#define FUZZ_CONFIG 2
#define FUZZ_TOKENIZER 3

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
