#include "mphost/ipc/process_identity.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <time.h>
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

// ---- Verdict cache (process_seems_alive) ----
//
// Direct-mapped by pid: each entry remembers what /proc said about one pid
// (exists, zombie, start time) and when. An entry is guarded by a tiny
// spin flag that is only ever try-locked: a busy entry means "ask /proc
// directly", never a wait. The flag holds the fork generation of its holder
// (plus one, 0 is free), so a flag that a thread of the parent held at the
// fork reads as free in the child without the child writing to the table:
// the child of a fork copies none of its pages.

constexpr std::size_t verdict_entries = 2048;
constexpr std::int64_t verdict_validity_ns = 25'000'000;  // 25 ms

struct verdict_entry {
  std::atomic<std::uint64_t> holder{0};
  pid_t pid = 0;
  bool found = false;
  bool finished = false;  // zombie or dead
  std::uint64_t start_time = 0;
  std::int64_t checked_ns = 0;
};
verdict_entry verdicts[verdict_entries];

std::int64_t now_ns() noexcept {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

// Takes the flag of `e` for this process; false if a thread of it has it.
bool try_hold(verdict_entry& e) noexcept {
  const std::uint64_t mine = generation.load(std::memory_order_relaxed) + 1;
  std::uint64_t seen = e.holder.load(std::memory_order_relaxed);
  if (seen == mine) return false;
  return e.holder.compare_exchange_strong(seen, mine, std::memory_order_acquire, std::memory_order_relaxed);
}

void let_go(verdict_entry& e) noexcept { e.holder.store(0, std::memory_order_release); }

bool verdict_of(bool found, bool finished, std::uint64_t seen_start, std::uint64_t wanted_start) noexcept {
  if (!found || finished) return false;
  return wanted_start == 0 || seen_start == 0 || seen_start == wanted_start;
}

// What /proc says of `pid`, with kill(pid, 0) == ESRCH as the cheap "gone".
stat_fields observe(pid_t pid) noexcept {
  if (::kill(pid, 0) != 0 && errno == ESRCH) return {};
  return read_stat(pid);
}

// In the child of a fork. Its start time is read from /proc when first asked
// for (own_start_time): most children never ask.
void refresh_after_fork() noexcept {
  generation.fetch_add(1, std::memory_order_relaxed);
  cached_pid.store(::getpid(), std::memory_order_relaxed);
  cached_start.store(0, std::memory_order_relaxed);
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

// The calling process's start time (0 if /proc cannot tell).
std::uint64_t own_start_time() noexcept {
  std::uint64_t start = cached_start.load(std::memory_order_relaxed);
  if (start == 0) {
    start = read_stat(::getpid()).start_time;
    cached_start.store(start, std::memory_order_relaxed);
  }
  return start;
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

bool process_seems_alive(pid_t pid, std::uint64_t start_time) noexcept {
  if (pid <= 0) return false;
  if (pid == current_pid()) return start_time == 0 || start_time == own_start_time();
  verdict_entry& e = verdicts[static_cast<std::size_t>(pid) % verdict_entries];
  const std::int64_t now = now_ns();
  if (!try_hold(e)) {
    const stat_fields st = observe(pid);
    return verdict_of(st.found, st.state == 'Z' || st.state == 'X' || st.state == 'x', st.start_time, start_time);
  }
  if (e.pid == pid && now - e.checked_ns < verdict_validity_ns) {
    const bool alive = verdict_of(e.found, e.finished, e.start_time, start_time);
    let_go(e);
    return alive;
  }
  const stat_fields st = observe(pid);
  e.pid = pid;
  e.found = st.found;
  e.finished = st.state == 'Z' || st.state == 'X' || st.state == 'x';
  e.start_time = st.start_time;
  e.checked_ns = now;
  const bool alive = verdict_of(e.found, e.finished, e.start_time, start_time);
  let_go(e);
  return alive;
}

void forget_process_verdicts() noexcept {
  for (verdict_entry& e : verdicts) {
    if (try_hold(e)) {
      e.pid = 0;
      let_go(e);
    }
  }
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
  return {pid, own_start_time()};
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
