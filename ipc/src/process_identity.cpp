#include "mphost/ipc/process_identity.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>

namespace mphost::ipc {
namespace {

struct stat_fields {
  bool found = false;
  char state = '?';
  std::uint64_t start_time = 0;
};

// Reads /proc/<pid>/stat: the state letter (field 3) and the start time
// (field 22). The command name (field 2) may contain spaces and parentheses,
// so parsing starts after its last ')'.
stat_fields read_stat(pid_t pid) noexcept {
  stat_fields out;
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    // ENOENT/ESRCH: no such process. Anything else: we cannot tell.
    if (errno != ENOENT && errno != ESRCH) out.found = true;
    return out;
  }
  char buf[1024];
  ssize_t n;
  do {
    n = ::read(fd, buf, sizeof buf - 1);
  } while (n < 0 && errno == EINTR);
  ::close(fd);
  if (n <= 0) {
    // A process that vanished between open and read reads as empty.
    return out;
  }
  buf[n] = '\0';
  out.found = true;
  const char* p = std::strrchr(buf, ')');
  if (p == nullptr) return out;
  ++p;
  // Fields after the name: " S ppid pgrp ..." ; state is field 3.
  int field = 2;
  while (*p != '\0') {
    while (*p == ' ') ++p;
    if (*p == '\0') break;
    ++field;
    if (field == 3) out.state = *p;
    if (field == 22) {
      std::uint64_t v = 0;
      while (*p >= '0' && *p <= '9') v = v * 10 + static_cast<std::uint64_t>(*p++ - '0');
      out.start_time = v;
      break;
    }
    while (*p != ' ' && *p != '\0') ++p;
  }
  return out;
}

std::atomic<pid_t> cached_pid{0};
std::atomic<std::uint64_t> cached_start{0};
std::atomic<std::uint64_t> generation{0};

void refresh_after_fork() noexcept {
  generation.fetch_add(1, std::memory_order_relaxed);
  const pid_t pid = ::getpid();
  cached_pid.store(pid, std::memory_order_relaxed);
  cached_start.store(read_stat(pid).start_time, std::memory_order_relaxed);
}

void ensure_initialised() noexcept {
  static const bool once = [] {
    const pid_t pid = ::getpid();
    cached_start.store(read_stat(pid).start_time, std::memory_order_relaxed);
    cached_pid.store(pid, std::memory_order_relaxed);
    ::pthread_atfork(nullptr, nullptr, &refresh_after_fork);
    return true;
  }();
  (void)once;
}

struct thread_cache {
  std::uint64_t generation = ~std::uint64_t{0};
  std::uint32_t tid = 0;
};
thread_local thread_cache this_thread;

}  // namespace

std::uint64_t process_start_time(pid_t pid) noexcept { return read_stat(pid).start_time; }

bool process_is_alive(pid_t pid, std::uint64_t start_time) noexcept {
  if (pid <= 0) return false;
  const stat_fields st = read_stat(pid);
  if (!st.found) return false;
  if (st.state == 'Z' || st.state == 'X' || st.state == 'x') return false;
  if (start_time != 0 && st.start_time != 0 && st.start_time != start_time) return false;
  return true;
}

pid_t current_pid() noexcept {
  pid_t pid = cached_pid.load(std::memory_order_relaxed);
  if (pid == 0) {
    ensure_initialised();
    pid = cached_pid.load(std::memory_order_relaxed);
  }
  return pid;
}

process_identity process_identity::current() noexcept {
  const pid_t pid = current_pid();
  return {pid, cached_start.load(std::memory_order_relaxed)};
}

std::uint32_t current_thread_id() noexcept {
  ensure_initialised();
  const std::uint64_t gen = generation.load(std::memory_order_relaxed);
  if (this_thread.generation != gen) {
    this_thread.tid = static_cast<std::uint32_t>(::syscall(SYS_gettid));
    this_thread.generation = gen;
  }
  return this_thread.tid;
}

std::uint64_t fork_generation() noexcept {
  ensure_initialised();
  return generation.load(std::memory_order_relaxed);
}

}  // namespace mphost::ipc
