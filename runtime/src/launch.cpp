#include "mphost/runtime/launch.hpp"

#include <fcntl.h>
#include <linux/close_range.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <boost/process/child.hpp>
#include <boost/process/args.hpp>
#include <boost/process/exe.hpp>
#include <boost/process/extend.hpp>
#include <boost/process/error.hpp>
#include <cerrno>
#include <climits>
#include <string>
#include <string_view>
#include <vector>
#include <system_error>

#include "mphost/ipc/channel.hpp"
#include "mphost/ipc/error.hpp"

namespace bp = boost::process;

namespace mphost::runtime {
namespace {

// Runs in the child between fork and exec: marks every descriptor above
// stderr close-on-exec, then clears the flag on the ones to pass, and
// changes to the requested directory (a failure is launch()'s error). Only
// async-signal-safe calls here.
struct inherit_only {
  const std::vector<int>* keep;
  const char* start_dir;  // or null: stay where the parent is
  char** envp;            // the child's environment, made before the fork


  template <class Executor>
  void operator()(Executor& exec) const {
    if (::syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) != 0) {
      // Kernels before 5.11: walk a generous range instead.
      const long max_fd = ::sysconf(_SC_OPEN_MAX);
      for (int fd = 3; fd < (max_fd > 0 ? max_fd : 1024); ++fd) {
        const int flags = ::fcntl(fd, F_GETFD);
        if (flags >= 0) ::fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
      }
    }
    // Channel endpoints are inherited across fork like descriptors; like
    // close-on-exec descriptors, they must not outlive the exec.
    ipc::release_endpoints_before_exec();
    for (int fd : *keep) {
      const int flags = ::fcntl(fd, F_GETFD);
      if (flags < 0 || ::fcntl(fd, F_SETFD, flags & ~FD_CLOEXEC) < 0) {
        exec.set_error(std::error_code(errno, std::system_category()), "fcntl");
        return;
      }
    }
    if (start_dir != nullptr && ::chdir(start_dir) != 0) {
      exec.set_error(std::error_code(errno, std::system_category()), "chdir");
    }
    exec.env = envp;
  }
};

// This process's environment with the request's entries over it, as the
// "NAME=value" strings execve takes. (Made here rather than with
// boost::process::environment, whose lookup compares a name with memcmp
// past the end of shorter entries.)
std::vector<std::string> merged_environment(const launch_request& request) {
  std::vector<std::string> entries;
  for (char** e = ::environ; *e != nullptr; ++e) {
    const std::string_view entry(*e);
    const std::string_view name = entry.substr(0, entry.find('='));
    bool replaced = false;
    for (const auto& [key, value] : request.environment) replaced = replaced || key == name;
    if (!replaced) entries.emplace_back(entry);
  }
  const auto& wanted = request.environment;
  for (std::size_t i = 0; i < wanted.size(); ++i) {
    bool set_again = false;  // a later entry of the same name wins
    for (std::size_t j = i + 1; j < wanted.size(); ++j) set_again = set_again || wanted[j].first == wanted[i].first;
    if (!set_again) entries.push_back(wanted[i].first + "=" + wanted[i].second);
  }
  return entries;
}

}  // namespace

pid_t launch(const launch_request& request) {
  std::error_code ec;
  std::vector<std::string> entries = merged_environment(request);
  std::vector<char*> envp;
  envp.reserve(entries.size() + 1);
  for (auto& entry : entries) envp.push_back(entry.data());
  envp.push_back(nullptr);
  const char* dir = request.working_directory.empty() ? nullptr : request.working_directory.c_str();
  bp::child child(bp::exe = request.executable, bp::args = request.args,
                  bp::extend::on_exec_setup = inherit_only{&request.pass_fds, dir, envp.data()}, ec);
  if (ec) throw std::system_error(ec, "cannot start " + request.executable);
  const pid_t pid = child.id();
  // The caller reaps the child; Boost must neither wait for nor kill it.
  child.detach();
  return pid;
}

std::string current_executable() {
  char buffer[PATH_MAX];
  const ssize_t n = ::readlink("/proc/self/exe", buffer, sizeof buffer - 1);
  if (n < 0) throw_errno("readlink /proc/self/exe");
  return std::string(buffer, static_cast<std::size_t>(n));
}

}  // namespace mphost::runtime
