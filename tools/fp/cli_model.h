/* Options shared by the fp commands that load a model (train, eval, generate).
 * Each returns 0, or the process exit code after printing why (2 for usage
 * errors, 1 for failures). */
#ifndef FP_CLI_MODEL_H
#define FP_CLI_MODEL_H

#include <stdint.h>

#include "fedproxy/runtime.h"

/* Token ids from --tokens FILE or --text FILE (with DIR/tokenizer.json); *ids malloc'd. */
int fp_cli_read_tokens(const char *cmd, int argc, char **argv, const char *model_dir, int32_t **ids, int64_t *n);

/* --base-dtype f32|f16|bf16 (absent: f32). */
int fp_cli_base_dtype(const char *cmd, int argc, char **argv, fp_dtype *out);

#endif
