#pragma once
// Shared by the C++ API tests: pool options that find the build's mphost
// and the helper callables (py/api_helpers.py), and /dev/shm checks.
#include <dirent.h>

#include <string>
#include <vector>

#include "mphost/mphost.hpp"

namespace mphost_test {

inline mphost::pool_options options(std::size_t workers = 2) {
  mphost::pool_options o;
  o.workers = workers;
  o.executable = MPHOST_TEST_EXECUTABLE;
  o.python_path = {MPHOST_TEST_PY_DIR};
  o.shutdown_timeout = std::chrono::milliseconds(3000);
  return o;
}

// Entries of /dev/shm starting with `prefix`.
inline std::vector<std::string> shm_names(const std::string& prefix) {
  std::vector<std::string> out;
  if (DIR* d = opendir("/dev/shm")) {
    while (dirent* e = readdir(d)) {
      const std::string n = e->d_name;
      if (n.compare(0, prefix.size(), prefix) == 0) out.push_back(n);
    }
    closedir(d);
  }
  return out;
}

inline bool shm_exists(const std::string& name) {
  const std::string n = name[0] == '/' ? name.substr(1) : name;
  for (const auto& x : shm_names(n)) {
    if (x == n) return true;
  }
  return false;
}

}  // namespace mphost_test
