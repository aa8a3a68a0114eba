# mphost embeds Debian's system interpreter, never whichever python3 comes
# first on PATH: the launcher must load the same libpython3.11 as /usr/bin/python3.
set(MPHOST_PYTHON "/usr/bin/python3.11" CACHE FILEPATH "Interpreter whose libpython is embedded")
set(Python3_EXECUTABLE "${MPHOST_PYTHON}")
set(Python3_FIND_STRATEGY LOCATION)
set(Python3_FIND_UNVERSIONED_NAMES NEVER)
find_package(Python3 3.11 EXACT REQUIRED COMPONENTS Interpreter Development.Embed)
find_package(pybind11 2.10 CONFIG REQUIRED)

# Link libpython statically when Debian's archive is there, as /usr/bin/python3
# itself does: the shared libpython is built position-independent and runs
# pure-Python code markedly slower. The executable then exports the C API for
# extension modules (lib-dynload) and is not position-independent, since the
# archive is not.
execute_process(
  COMMAND ${Python3_EXECUTABLE} -c "import sysconfig, os; print(os.path.join(sysconfig.get_config_var('LIBPL'), sysconfig.get_config_var('LIBRARY')))"
  OUTPUT_VARIABLE MPHOST_LIBPYTHON_ARCHIVE OUTPUT_STRIP_TRAILING_WHITESPACE)
option(MPHOST_STATIC_LIBPYTHON "Link libpython3.11 statically" ON)

add_library(mphost_libpython INTERFACE)
if(MPHOST_STATIC_LIBPYTHON AND EXISTS "${MPHOST_LIBPYTHON_ARCHIVE}")
  message(STATUS "mphost: linking ${MPHOST_LIBPYTHON_ARCHIVE} statically")
  find_package(ZLIB REQUIRED)
  find_package(EXPAT REQUIRED)
  target_include_directories(mphost_libpython INTERFACE ${Python3_INCLUDE_DIRS})
  target_link_libraries(mphost_libpython INTERFACE
    "${MPHOST_LIBPYTHON_ARCHIVE}" EXPAT::EXPAT ZLIB::ZLIB ${CMAKE_DL_LIBS} m util Threads::Threads)
  target_link_options(mphost_libpython INTERFACE -no-pie "LINKER:--export-dynamic")
else()
  message(STATUS "mphost: linking the shared libpython3.11")
  target_link_libraries(mphost_libpython INTERFACE Python3::Python)
endif()
