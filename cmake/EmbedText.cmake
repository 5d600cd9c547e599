# Writes the text of INPUT as a C++ raw string literal into OUTPUT, so a data file (a tuning
# table, kernel headers) has one home in the tree and is still compiled into the binary.
# Usage: cmake -DINPUT=file -DOUTPUT=file.inc -P EmbedText.cmake
file(READ "${INPUT}" content)
# Raw string literals are limited in length by some compilers: split into 8 KiB pieces.
string(LENGTH "${content}" length)
set(result "")
set(offset 0)
while(offset LESS length)
  string(SUBSTRING "${content}" ${offset} 8192 piece)
  string(APPEND result "R\"MIXTILE_EMBED(${piece})MIXTILE_EMBED\"\n")
  math(EXPR offset "${offset} + 8192")
endwhile()
if(result STREQUAL "")
  set(result "\"\"")
endif()
file(WRITE "${OUTPUT}.tmp" "${result}")
file(COPY_FILE "${OUTPUT}.tmp" "${OUTPUT}" ONLY_IF_DIFFERENT)
file(REMOVE "${OUTPUT}.tmp")
