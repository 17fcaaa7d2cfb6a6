# cmake -P helper: writes SPIR-V file IN as a C array fp_spv_NAME into OUT.
file(READ ${IN} hex HEX)
string(LENGTH "${hex}" nhex)
math(EXPR nbytes "${nhex} / 2")
math(EXPR rem "${nbytes} % 4")
if(NOT rem EQUAL 0)
  message(FATAL_ERROR "${IN}: SPIR-V size ${nbytes} is not a multiple of 4")
endif()
# SPIR-V words are little-endian in the file; emit them as 32-bit words, eight
# to a line. Two whole-string regex passes, no per-word loop: a CMake loop over
# a large shader's 300k words took minutes.
string(REGEX REPLACE "([0-9a-f][0-9a-f])([0-9a-f][0-9a-f])([0-9a-f][0-9a-f])([0-9a-f][0-9a-f])" "0x\\4\\3\\2\\1u," body "${hex}")
string(REGEX REPLACE "((0x[0-9a-f]+u,)(0x[0-9a-f]+u,)(0x[0-9a-f]+u,)(0x[0-9a-f]+u,)(0x[0-9a-f]+u,)(0x[0-9a-f]+u,)(0x[0-9a-f]+u,)(0x[0-9a-f]+u,))" "\\1\n" body "${body}")
file(WRITE ${OUT} "/* Generated from ${NAME}.spv; do not edit. */\nconst unsigned int fp_spv_${NAME}[] = {\n${body}\n};\nconst unsigned long fp_spv_${NAME}_size = ${nbytes}ul;\n")
