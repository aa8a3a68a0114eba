#pragma once
// Helpers shared by the fuzz targets: a property that fails stops the run
// with a message (libFuzzer then saves the input as a crash).
#include <cstdio>
#include <cstdlib>
#include <system_error>

#include "mphost/ipc/error.hpp"

namespace mphost::fuzz {

[[noreturn]] inline void fail(const char* what) {
  std::fprintf(stderr, "fuzz property violated: %s\n", what);
  std::abort();
}

inline void require(bool condition, const char* what) {
  if (!condition) fail(what);
}

// A peer's bytes may only ever produce these errors.
inline void require_code(const std::system_error& e, errc a, errc b = errc{}) {
  if (e.code() == make_error_code(a) || (b != errc{} && e.code() == make_error_code(b))) return;
  std::fprintf(stderr, "unexpected error: %s\n", e.what());
  std::abort();
}

}  // namespace mphost::fuzz
