# Sanitizer builds: -DMPHOST_SANITIZE=address,undefined or -DMPHOST_SANITIZE=thread
# (see CMakePresets.json, presets asan and tsan, and `tools/dev.sh sanitize`).
# Every target of the tree is instrumented: the core (ipc, runtime), embed,
# api, the launcher and the tests. UBSan does not recover, so any report ends
# the process with a failure. libpython, Boost and GoogleTest stay
# uninstrumented (tools/sanitizers/*.supp say what that costs).
set(MPHOST_SANITIZE "" CACHE STRING
  "Comma-separated sanitizers to build with: address,undefined or thread (empty: none)")

if(MPHOST_SANITIZE)
  string(REPLACE "," ";" _mphost_sanitizers "${MPHOST_SANITIZE}")
  foreach(_s IN LISTS _mphost_sanitizers)
    if(NOT _s MATCHES "^(address|undefined|thread|leak)$")
      message(FATAL_ERROR "MPHOST_SANITIZE: unknown sanitizer '${_s}'")
    endif()
  endforeach()
  if("thread" IN_LIST _mphost_sanitizers AND "address" IN_LIST _mphost_sanitizers)
    message(FATAL_ERROR "MPHOST_SANITIZE: thread and address cannot be combined")
  endif()
  set(_mphost_flags -fsanitize=${MPHOST_SANITIZE} -O1 -g -fno-omit-frame-pointer)
  if("undefined" IN_LIST _mphost_sanitizers)
    list(APPEND _mphost_flags -fno-sanitize-recover=all)
  endif()
  add_compile_options(${_mphost_flags})
  add_link_options(-fsanitize=${MPHOST_SANITIZE})
  # GoogleTest lists a test binary's tests when ctest runs, not at build
  # time, so that the listing runs with the options and suppressions
  # tools/dev.sh sets (the binary is instrumented: LeakSanitizer would
  # otherwise report libpython's objects alive at exit and fail the build).
  set(CMAKE_GTEST_DISCOVER_TESTS_DISCOVERY_MODE PRE_TEST)
  message(STATUS "mphost: sanitizers ${MPHOST_SANITIZE}")
endif()
