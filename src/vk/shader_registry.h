/* The embedded SPIR-V table generated at build time (cmake/FpShaders.cmake). */
#ifndef FP_SHADER_REGISTRY_H
#define FP_SHADER_REGISTRY_H

struct fp_shader_blob {
    const char *name;
    const unsigned int *code;
    const unsigned long *size; /* bytes */
};

extern const struct fp_shader_blob fp_shader_table[];
extern const unsigned fp_shader_count;

/* Returns the blob named name, or NULL. */
const struct fp_shader_blob *fp_shader_find(const char *name);

#endif
