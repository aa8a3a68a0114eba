# The Debian package: `cmake --build build --target package` (or
# `tools/dev.sh package`) writes build/mphost_<version>_amd64.deb with the
# launcher, the shim, the headers, the libraries and the CMake files, for
# /usr. It depends on Debian's own CPython 3.11 (the launcher links
# libpython3.11 statically but uses its standard library; libmphost_embed.so
# links libpython3.11.so.1.0).
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME mphost)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_VENDOR "mphost")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "CPython 3.11 runtime with a native multiprocessing, for Python programs and C++ applications")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_PACKAGE_DIRECTORY ${PROJECT_BINARY_DIR})
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_ARCHITECTURE amd64)
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "mphost developers <mphost@localhost>")
set(CPACK_DEBIAN_PACKAGE_SECTION python)
set(CPACK_DEBIAN_PACKAGE_DEPENDS
    "libpython3.11 (>= 3.11.2), libpython3.11-stdlib (>= 3.11.2), libc6 (>= 2.36), libstdc++6 (>= 12), libgcc-s1, libexpat1, zlib1g")
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "python3.11")
include(CPack)
