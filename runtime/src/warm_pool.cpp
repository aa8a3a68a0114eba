#include "mphost/runtime/warm_pool.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <new>
#include <string_view>
#include <thread>

#include "mphost/ipc/error.hpp"
#include "mphost/runtime/exit_status.hpp"

namespace mphost::runtime {
namespace {

// True when `pid` is dying: a kill(SIGKILL) has returned in some process but
// the spare has not ended yet (it is still pending, or the exit has begun),
// so that a handover now would go to a process that is gone a moment later.
// A process that is not ours to read counts as alive.
bool dying(pid_t pid) noexcept {
  const std::string base = "/proc/" + std::to_string(pid);
  char buf[4096];
  int fd = ::open((base + "/status").c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno == ENOENT;
  const ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return false;
  buf[n] = '\0';
  const std::string_view status(buf, static_cast<std::size_t>(n));
  const auto field = [&](std::string_view name) -> std::string_view {
    const std::size_t at = status.find(name);
    if (at == std::string_view::npos) return {};
    std::size_t from = at + name.size();
    while (from < status.size() && (status[from] == ' ' || status[from] == '\t')) ++from;
    const std::size_t end = status.find('\n', from);
    return status.substr(from, end == std::string_view::npos ? std::string_view::npos : end - from);
  };
  const std::string_view state = field("\nState:");
  if (!state.empty() && (state[0] == 'Z' || state[0] == 'X')) return true;
  // SIGKILL is signal 9: bit 8 of the pending masks (hexadecimal).
  for (std::string_view mask : {field("\nSigPnd:"), field("\nShdPnd:")}) {
    if (mask.size() >= 3) {
      const char digit = mask[mask.size() - 3];
      const int value = digit >= 'a' ? digit - 'a' + 10 : digit - '0';
      if (value & 1) return true;
    }
  }
  // The exit has begun (PF_EXITING in the flags of /proc/<pid>/stat).
  fd = ::open((base + "/stat").c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno == ENOENT;
  const ssize_t m = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (m <= 0) return false;
  const std::string_view stat(buf, static_cast<std::size_t>(m));
  const std::size_t paren = stat.rfind(')');
  if (paren == std::string_view::npos) return false;
  // After ") ": state, ppid, pgrp, session, tty_nr, tpgid, flags.
  std::size_t at = paren + 2;
  for (int skip = 0; skip < 6 && at < stat.size(); ++skip) {
    at = stat.find(' ', at);
    if (at == std::string_view::npos) return false;
    ++at;
  }
  unsigned long flags = std::strtoul(buf + at, nullptr, 10);
  constexpr unsigned long pf_exiting = 0x4;
  return (flags & pf_exiting) != 0;
}

}  // namespace

waiting_child launch_waiting_child(launch_request request) {
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) throw_errno("socketpair");
  const std::string child_fd = std::to_string(pair[1]);
  for (std::string& arg : request.args) {
    if (arg == "{fd}") arg = child_fd;
  }
  request.pass_fds.push_back(pair[1]);
  pid_t pid;
  try {
    pid = launch(request);
  } catch (...) {
    ::close(pair[0]);
    ::close(pair[1]);
    throw;
  }
  ::close(pair[1]);
  struct stat st {};
  ::fstat(pair[0], &st);
  return {pid, pair[0], st.st_ino};
}

bool socket_intact(const waiting_child& child) noexcept {
  struct stat st {};
  return ::fstat(child.sock, &st) == 0 && st.st_ino == child.inode;
}

void abandon(const waiting_child& child) noexcept {
  if (socket_intact(child)) ::close(child.sock);
  ::kill(child.pid, SIGKILL);
  try {
    wait_for_exit(child.pid, true);
  } catch (const std::system_error&) {
    // Reaped by someone else already (os.waitpid(-1) in user code).
  }
}

std::string inherited_state_fingerprint() {
  std::string out;
  const mode_t mask = ::umask(0);
  ::umask(mask);
  out += "umask=" + std::to_string(mask);
  sigset_t blocked;
  ::pthread_sigmask(SIG_SETMASK, nullptr, &blocked);
  out += ";blocked=";
  for (int s = 1; s < NSIG; ++s) {
    if (sigismember(&blocked, s) == 1) out += std::to_string(s) + ",";
  }
  out += ";ignored=";
  for (int s = 1; s < NSIG; ++s) {
    struct sigaction action{};
    if (::sigaction(s, nullptr, &action) == 0 && action.sa_handler == SIG_IGN) out += std::to_string(s) + ",";
  }
  for (int resource : {RLIMIT_NOFILE, RLIMIT_CORE, RLIMIT_STACK, RLIMIT_AS, RLIMIT_CPU, RLIMIT_NPROC}) {
    rlimit limit{};
    ::getrlimit(resource, &limit);
    out += ";r" + std::to_string(resource) + "=" + std::to_string(limit.rlim_cur) + "/" + std::to_string(limit.rlim_max);
  }
  return out;
}

warm_pool::~warm_pool() {
  std::lock_guard lock(mutex_);
  // At exit the spare sees its socket close and ends by itself; no waiting here.
  if (spare_) ::close(spare_->sock);
  spare_.reset();
}

std::optional<waiting_child> warm_pool::take(const std::string& key) {
  std::lock_guard lock(mutex_);
  if (!spare_) return std::nullopt;
  if (key_ != key + "|" + inherited_state_fingerprint()) {
    discard_locked();
    return std::nullopt;
  }
  std::optional<waiting_child> taken = spare_;
  spare_.reset();
  // A spare that died meanwhile (killed from outside) is no use. It stays a
  // zombie until reaped, which kill(pid, 0) does not tell from a live one:
  // ask waitpid, which reaps it if it has ended.
  bool ended = true;
  try {
    ended = wait_for_exit(taken->pid, false).has_value();
  } catch (const std::system_error&) {
    // Reaped by someone else already (os.waitpid(-1) in user code): gone.
  }
  if (ended) {
    if (socket_intact(*taken)) ::close(taken->sock);
    return std::nullopt;
  }
  if (dying(taken->pid)) {
    abandon(*taken);
    return std::nullopt;
  }
  // Its socket must still lead to it: a stray close elsewhere in the process
  // may have ended it, and its number may now belong to someone else, so it is
  // left alone and the spare is stopped instead.
  if (!socket_intact(*taken)) {
    abandon(*taken);
    return std::nullopt;
  }
  return taken;
}

void warm_pool::stock(const launch_request& request, const std::string& key) {
  std::lock_guard lock(mutex_);
  if (spare_) return;
  spare_ = launch_waiting_child(request);
  key_ = key + "|" + inherited_state_fingerprint();
}

void warm_pool::stock_in_background(const launch_request& request, const std::string& key) {
  {
    std::lock_guard lock(mutex_);
    if (spare_ || stocking_) return;
    stocking_ = true;
  }
  // The key's fingerprint is taken now, on the caller's thread: signal masks are per thread.
  std::string full_key = key + "|" + inherited_state_fingerprint();
  std::thread([this, request, full_key = std::move(full_key)] {
    std::optional<waiting_child> child;
    try {
      child = launch_waiting_child(request);
    } catch (const std::system_error&) {
    }
    std::lock_guard lock(mutex_);
    stocking_ = false;
    if (!child) return;
    if (spare_) {
      ::close(child->sock);  // someone stocked meanwhile; this one ends on EOF
      return;
    }
    spare_ = child;
    key_ = full_key;
  }).detach();
}

void warm_pool::forget() noexcept {
  // Runs in a freshly forked child, where only the forking thread exists: a
  // mutex held by another thread of the parent at fork time would never be
  // released here, so it is made anew instead of locked.
  new (&mutex_) std::mutex();
  if (spare_) ::close(spare_->sock);
  spare_.reset();
  stocking_ = false;
}

bool warm_pool::has_spare() const {
  std::lock_guard lock(mutex_);
  return spare_.has_value();
}

void warm_pool::discard_locked() noexcept {
  // Closing the socket tells the spare to end; it exits without output.
  ::close(spare_->sock);
  try {
    wait_for_exit(spare_->pid, true);
  } catch (const std::system_error&) {
    // Already reaped by someone else (os.waitpid(-1) in user code).
  }
  spare_.reset();
}

}  // namespace mphost::runtime
