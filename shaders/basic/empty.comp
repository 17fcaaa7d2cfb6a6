#version 450
// Does nothing: measures dispatch overhead.
#include "common.glsl"
void main() {}
