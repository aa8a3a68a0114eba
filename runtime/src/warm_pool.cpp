#include "mphost/runtime/warm_pool.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <new>
#include <string_view>
#include <thread>

#include "mphost/ipc/error.hpp"
#include "mphost/ipc/process_identity.hpp"
#include "mphost/ipc/process_table.hpp"
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

// For observers (ipc/process_table.hpp): a spare waiting for work, or gone.
void note_spare(pid_t pid, bool ready) noexcept {
  ipc::process_note note;
  note.pid = pid;
  if (ready) {
    note.fresh = true;
    note.ppid = ipc::current_pid();
    note.stamp_started_at = true;
    note.role = ipc::process_role::warm_spare;
    note.method = ipc::process_method::spawn;
  }
  note.state = ready ? ipc::process_state::ready : ipc::process_state::exited;
  ipc::note_process(note);
}

void abandon(const waiting_child& child) noexcept {
  if (socket_intact(child)) ::close(child.sock);
  note_spare(child.pid, false);
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

namespace {

// Stops spares that will not be used, outside the pool's lock.
void abandon_all(const std::vector<waiting_child>& children) noexcept {
  for (const waiting_child& child : children) abandon(child);
}

// True if `child` can still take work: alive, not dying, its socket intact.
// A spare that cannot is stopped (or, if it ended already, reaped).
bool usable(const waiting_child& child) noexcept {
  // A spare killed from outside stays a zombie until reaped, which
  // kill(pid, 0) does not tell from a live one: ask waitpid, which reaps it.
  bool ended = true;
  try {
    ended = wait_for_exit(child.pid, false).has_value();
  } catch (const std::system_error&) {
    // Reaped by someone else already (os.waitpid(-1) in user code): gone.
  }
  if (ended) {
    if (socket_intact(child)) ::close(child.sock);
    note_spare(child.pid, false);
    return false;
  }
  // Its socket must still lead to it: a stray close elsewhere in the process
  // may have ended it, and its number may now belong to someone else, so it
  // is left alone and the spare is stopped instead.
  if (dying(child.pid) || !socket_intact(child)) {
    abandon(child);
    return false;
  }
  return true;
}

}  // namespace

warm_pool::warm_pool() { spares_.reserve(max_spares); }

warm_pool::~warm_pool() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (worker_.joinable()) worker_.join();
  // At exit the spares see their sockets close and end by themselves; no waiting here.
  for (const waiting_child& child : spares_) ::close(child.sock);
  spares_.clear();
}

std::optional<waiting_child> warm_pool::take(const std::string& key) {
  const std::string full_key = key + "|" + inherited_state_fingerprint();
  std::vector<waiting_child> stale;
  std::optional<waiting_child> taken;
  {
    std::lock_guard lock(mutex_);
    const auto now = std::chrono::steady_clock::now();
    burst_ = (burst_ > 0 && now - last_take_ <= policy_.burst_gap) ? burst_ + 1 : 1;
    last_take_ = now;
    wanted_ = std::min(std::max(wanted_, burst_), std::clamp<std::size_t>(policy_.limit, 1, max_spares));
    if (key_ != full_key) {
      stale.assign(spares_.begin(), spares_.end());
      spares_.clear();
      ++generation_;
    }
    while (!spares_.empty() && !taken) {
      waiting_child child = spares_.front();
      spares_.erase(spares_.begin());
      if (usable(child)) taken = child;
    }
  }
  abandon_all(stale);
  return taken;
}

void warm_pool::stock(const launch_request& request, const std::string& key) {
  const std::string full_key = key + "|" + inherited_state_fingerprint();
  {
    std::lock_guard lock(mutex_);
    if (!spares_.empty()) return;
  }
  // Started without the lock, which is never held across a fork.
  const waiting_child child = launch_waiting_child(request);
  note_spare(child.pid, true);
  {
    std::lock_guard lock(mutex_);
    if (spares_.empty()) {
      spares_.push_back(child);
      key_ = full_key;
      return;
    }
  }
  abandon(child);
}

void warm_pool::stock_in_background(const launch_request& request, const std::string& key) {
  // The key's fingerprint and the signal mask are taken on the caller's
  // thread: signal masks are per thread.
  const std::string full_key = key + "|" + inherited_state_fingerprint();
  sigset_t mask;
  ::pthread_sigmask(SIG_SETMASK, nullptr, &mask);
  std::vector<waiting_child> stale;
  {
    std::lock_guard lock(mutex_);
    if (key_ != full_key) {
      stale.assign(spares_.begin(), spares_.end());
      spares_.clear();
      ++generation_;
      key_ = full_key;
    }
    request_ = request;
    mask_ = mask;
    if (!worker_.joinable()) {
      // The refill thread blocks every signal but while it starts a child:
      // signals aimed at the program go to its other threads.
      sigset_t all;
      ::sigfillset(&all);
      sigset_t previous;
      ::pthread_sigmask(SIG_SETMASK, &all, &previous);
      try {
        worker_ = std::thread([this] { refill_loop(); });
      } catch (const std::system_error&) {
        // No thread: no spares; children start cold.
      }
      ::pthread_sigmask(SIG_SETMASK, &previous, nullptr);
    }
  }
  wake_.notify_one();
  abandon_all(stale);
}

void warm_pool::set_policy(const spare_policy& policy) {
  {
    std::lock_guard lock(mutex_);
    policy_ = policy;
    wanted_ = std::min(wanted_, std::clamp<std::size_t>(policy_.limit, 1, max_spares));
  }
  wake_.notify_one();
}

std::vector<waiting_child> warm_pool::drop_extras_locked() {
  std::vector<waiting_child> extras;
  while (spares_.size() > 1) {
    extras.push_back(spares_.back());
    spares_.pop_back();
  }
  return extras;
}

void warm_pool::refill_loop() {
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    const auto idle_since = last_take_ + policy_.idle_drop;
    if (wanted_ > 1 && std::chrono::steady_clock::now() >= idle_since) {
      wanted_ = 1;
      const std::vector<waiting_child> extras = drop_extras_locked();
      lock.unlock();
      abandon_all(extras);
      lock.lock();
      continue;
    }
    if (request_ && spares_.size() + launching_ < wanted_) {
      const launch_request request = *request_;
      const sigset_t mask = mask_;
      const std::uint64_t generation = generation_;
      ++launching_;
      lock.unlock();
      std::optional<waiting_child> child;
      sigset_t all;
      ::sigfillset(&all);
      ::pthread_sigmask(SIG_SETMASK, &mask, nullptr);  // the child inherits the caller's mask
      try {
        child = launch_waiting_child(request);
        note_spare(child->pid, true);
      } catch (const std::system_error&) {
      }
      ::pthread_sigmask(SIG_SETMASK, &all, nullptr);
      lock.lock();
      --launching_;
      if (!child) {
        request_.reset();  // until the next stock_in_background(): no retry loop
        continue;
      }
      if (generation != generation_ || stopping_) {
        lock.unlock();
        abandon(*child);
        lock.lock();
        continue;
      }
      spares_.push_back(*child);
      continue;
    }
    if (wanted_ > 1) {
      wake_.wait_until(lock, idle_since);
    } else {
      wake_.wait(lock);
    }
  }
}

void warm_pool::before_fork() noexcept { mutex_.lock(); }

void warm_pool::after_fork_in_parent() noexcept { mutex_.unlock(); }

void warm_pool::after_fork_in_child() noexcept {
  // Only the forking thread exists here, and it holds the lock (taken by
  // before_fork()), so the state is whole. The refill thread is gone: its
  // handle is dropped unjoined and the condition variable, which may still
  // count it as a waiter, is made anew.
  new (&wake_) std::condition_variable();
  new (&worker_) std::thread();
  for (const waiting_child& child : spares_) {
    if (socket_intact(child)) ::close(child.sock);
  }
  spares_.clear();
  request_.reset();
  launching_ = 0;
  wanted_ = 1;
  burst_ = 0;
  ++generation_;
  mutex_.unlock();
}

bool warm_pool::has_spare() const {
  std::lock_guard lock(mutex_);
  return !spares_.empty();
}

std::size_t warm_pool::spare_count() const {
  std::lock_guard lock(mutex_);
  return spares_.size();
}

}  // namespace mphost::runtime
