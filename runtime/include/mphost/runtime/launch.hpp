#pragma once
// Starts a fresh mphost process (or any executable) with Boost.Process.
//
// The child inherits stdin/stdout/stderr and exactly the descriptors listed
// in `pass_fds`, at the same numbers; every other descriptor is closed on
// exec. Boost.Process is confined to launch.cpp: its headers are slow to
// compile and none of its types appear here.
//
// `environment` entries are set (over this process's environment) and
// `working_directory`, if not empty, is the child's starting directory, both
// before exec: an interpreter started there sees them from its first line
// (PYTHON* variables take effect, relative paths resolve there).

#include <sys/types.h>

#include <string>
#include <utility>
#include <vector>

namespace mphost::runtime {

struct launch_request {
  std::string executable;           // absolute path
  std::vector<std::string> args;    // argv[1:]; argv[0] is `executable`
  std::vector<int> pass_fds;        // descriptors the child keeps
  std::vector<std::pair<std::string, std::string>> environment;  // set in the child
  std::string working_directory;    // the child's, if not empty
};

// Returns the child's pid. The caller owns the child: it must reap it
// (wait_for_exit). Throws std::system_error if the executable cannot be started.
pid_t launch(const launch_request& request);

// The path of the running executable (/proc/self/exe, resolved).
std::string current_executable();

}  // namespace mphost::runtime
