# Installation: the launcher, the shim package next to it
# (<prefix>/share/mphost/python, found relative to bin/), and CMake package
# files so that find_package(mphost) works.
include(CMakePackageConfigHelpers)

install(TARGETS mphost_launcher EXPORT mphostTargets RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(DIRECTORY python_stdlib_shim/multiprocessing
        DESTINATION ${CMAKE_INSTALL_DATADIR}/mphost/python
        PATTERN "__pycache__" EXCLUDE)

install(EXPORT mphostTargets NAMESPACE mphost:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/mphost)
configure_package_config_file(cmake/mphostConfig.cmake.in
  ${PROJECT_BINARY_DIR}/mphostConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/mphost)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/mphostConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/mphostConfig.cmake ${PROJECT_BINARY_DIR}/mphostConfigVersion.cmake
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/mphost)
