# Installation: the launcher, the shim packages next to it
# (<prefix>/share/mphost/python, found relative to bin/), the embedding
# library and its header, and CMake package files so that find_package(mphost)
# gives mphost::launcher, mphost::embed and (when api/ is built) mphost::mphost.
# api/CMakeLists.txt installs its own target into the same export set.
include(CMakePackageConfigHelpers)

set(MPHOST_SHIM_INSTALL_DIR ${CMAKE_INSTALL_DATADIR}/mphost/python)
set(MPHOST_CMAKE_INSTALL_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/mphost)

install(TARGETS mphost_launcher EXPORT mphostTargets RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(TARGETS mphost_embed_shared EXPORT mphostTargets
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
# The MPI backend's extension module, when built, beside the shim's loader
# path: <prefix>/lib/mphost.
if(TARGET mphost_mpi_module)
  install(TARGETS mphost_mpi_module LIBRARY DESTINATION lib/mphost)
endif()
install(FILES embed/include/mphost/embed/application.hpp
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/mphost/embed)
# Every package of the shim: multiprocessing and, once api/ adds it, mphost.
install(DIRECTORY python_stdlib_shim/
        DESTINATION ${MPHOST_SHIM_INSTALL_DIR}
        FILES_MATCHING PATTERN "*.py"
        PATTERN "__pycache__" EXCLUDE)
# Its bytecode beside it, as the installed standard library has (see
# python_stdlib_shim/CMakeLists.txt).
install(CODE "execute_process(COMMAND \"${Python3_EXECUTABLE}\" -m compileall -q
                \"\$ENV{DESTDIR}\${CMAKE_INSTALL_PREFIX}/${MPHOST_SHIM_INSTALL_DIR}\")")

install(EXPORT mphostTargets NAMESPACE mphost:: DESTINATION ${MPHOST_CMAKE_INSTALL_DIR})
configure_package_config_file(cmake/mphostConfig.cmake.in
  ${PROJECT_BINARY_DIR}/mphostConfig.cmake
  INSTALL_DESTINATION ${MPHOST_CMAKE_INSTALL_DIR}
  PATH_VARS CMAKE_INSTALL_BINDIR MPHOST_SHIM_INSTALL_DIR)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/mphostConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/mphostConfig.cmake ${PROJECT_BINARY_DIR}/mphostConfigVersion.cmake
        DESTINATION ${MPHOST_CMAKE_INSTALL_DIR})

include(cmake/mphost_package.cmake)
