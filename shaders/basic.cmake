# Runtime basics: copy (also the bandwidth probe), fill, y = a*x + b, an empty kernel.
fp_shader(copy_f32 basic/copy.comp)
fp_shader(copy_vec4 basic/copy.comp DEFINES VEC4=1)
fp_shader(copy_tex_vec4 basic/copy.comp DEFINES VEC4=1 TEXEL=1)
fp_shader(axpb_f32 basic/axpb.comp)
fp_shader(empty basic/empty.comp)
