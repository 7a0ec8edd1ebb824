# Run by `cmake --install` after the headers are copied (install(SCRIPT) in CMakeLists.txt): the
# installed headers include each other as "kiln/engine/x.h", found through the exported include/
# root, so a consumer's own engine/, kernels/, layers/ or optim/ headers earlier on its include
# path cannot stand in for kiln's. The sources keep "engine/x.h"; a consumer may write
# <kiln/engine/tensor.h> or "engine/tensor.h" (include/kiln is exported too).
set(dir "$ENV{DESTDIR}${CMAKE_INSTALL_PREFIX}/include/kiln")
file(GLOB_RECURSE headers "${dir}/*.h")
foreach(h IN LISTS headers)
  file(READ "${h}" text)
  string(REGEX REPLACE "#include \"(engine|kernels|layers|optim)/" "#include \"kiln/\\1/" out "${text}")
  if(NOT out STREQUAL text)
    file(WRITE "${h}" "${out}")
  endif()
endforeach()
