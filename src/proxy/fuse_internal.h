/* Internal to src/proxy: the merged-LLM writer behind fp_proxy_fuse's merge_dir. */
#ifndef FP_FUSE_INTERNAL_H
#define FP_FUSE_INTERNAL_H

#include "fedproxy/peft.h"

/* Name of the marker file a merge output carries: a directory holding it is
 * a previous merge and may be replaced whole. */
#define FP_FUSE_MARKER "fedproxy_merge.json"

/* Writes llm_dir with la merged (see fp_proxy_fuse in proxy.h) into out_dir,
 * staged in a sibling temp directory and renamed into place. merge_dtype: 0
 * keep, FP_ST_F32/BF16/F16 force. */
int fp_fuse_write_merged(const char *llm_dir, const fp_lora_adapter *la, const char *out_dir, int merge_dtype);

#endif
