# Writes the bytes of IN as a C++ array NAME (with NAME_size) into OUT, in namespace whale:
#   cmake -DIN=file -DOUT=file.cpp -DNAME=kSomething -P embed.cmake
file(READ "${IN}" hex HEX)
string(LENGTH "${hex}" n)
math(EXPR size "${n} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REGEX REPLACE "(0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,)" "\\1\n" bytes "${bytes}")
file(WRITE "${OUT}" "// Generated from ${IN} by cmake/embed.cmake; do not edit.\n#include <cstddef>\nnamespace whale {\nextern const unsigned char ${NAME}[] = {\n${bytes}0};\nextern const size_t ${NAME}_size = ${size};\n}  // namespace whale\n")
