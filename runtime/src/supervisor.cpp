#include "mphost/runtime/supervisor.hpp"

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <map>
#include <mutex>
#include <string>

#include "mphost/ipc/error.hpp"
#include "mphost/ipc/process_table.hpp"
#include "mphost/ipc/process_identity.hpp"
#include "mphost/runtime/forkserver.hpp"
#include "mphost/runtime/sentinel.hpp"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif

namespace mphost::runtime {
namespace {

// One row of the table. Shared with the waiters, so that a row released
// while a thread sleeps on its sentinel keeps the descriptor open until that
// thread is done with it.
struct row {
  child_ticket ticket = 0;
  pid_t pid = -1;
  int sentinel = -1;
  bool reports_on_sentinel = false;  // forkserver: the code arrives on the status descriptor
  std::uint64_t start_time = 0;
  start_method method = start_method::fork;
  bool daemon = false;
  bool orphan = false;
  bool ended = false;
  std::optional<int> code;

  row() = default;
  row(const row&) = delete;
  row& operator=(const row&) = delete;
  ~row() {
    if (sentinel >= 0) ::close(sentinel);
  }
};

using row_ptr = std::shared_ptr<row>;

// Tickets count on across fork, so a child's tickets never meet its parent's.
std::atomic<child_ticket> last_ticket{0};

int code_from_siginfo(const siginfo_t& info) noexcept {
  return info.si_code == CLD_EXITED ? info.si_status : -info.si_status;
}

// Collects the code of `r` if it has ended. Called with the table's lock
// held: never blocks (the status descriptor is read only once readable).
void collect(row& r) {
  if (r.reports_on_sentinel) {
    if (!sentinel_ready(r.sentinel)) return;
    r.code = read_child_exit_code(r.sentinel).value_or(255);
    r.ended = true;
    return;
  }
  siginfo_t info{};
  while (::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(r.sentinel), &info, WEXITED | WNOHANG) != 0) {
    if (errno == EINTR) continue;
    if (errno != ECHILD) throw_errno("waitid");
    // Reaped by someone else: the code is lost once the process is gone.
    r.ended = sentinel_ready(r.sentinel);
    return;
  }
  if (info.si_pid == 0) return;  // still running
  r.code = code_from_siginfo(info);
  r.ended = true;
}

// For observers (ipc/process_table.hpp): the child has ended, with its code
// if it is known.
void note_ended(const row& r) noexcept {
  ipc::process_note note;
  note.pid = r.pid;
  note.state = ipc::process_state::exited;
  note.exit_code = r.code;
  ipc::note_process(note);
}

void settle(row& r) {
  if (r.ended) return;
  collect(r);
  if (r.ended) note_ended(r);
}

// -1 with errno set, as the system call.
int send_signal(const row& r, int signo) noexcept {
  if (!r.reports_on_sentinel) {
    return static_cast<int>(::syscall(SYS_pidfd_send_signal, r.sentinel, signo, nullptr, 0));
  }
  // By pid: only while the pid still names the process recorded at admit.
  if (r.start_time == 0 || process_start_time(r.pid) != r.start_time) {
    errno = ESRCH;
    return -1;
  }
  return ::kill(r.pid, signo);
}

// Sleeps until the sentinel of `r` is readable or `until` passes.
ipc::wait_result sleep_on(const row& r, const ipc::deadline& until) {
  pollfd watch{r.sentinel, POLLIN, 0};
  timespec left{};
  const timespec* limit = nullptr;
  if (!until.is_infinite()) {
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(until.remaining()).count();
    left.tv_sec = static_cast<time_t>(ns / 1'000'000'000);
    left.tv_nsec = static_cast<long>(ns % 1'000'000'000);
    limit = &left;
  }
  const int n = ::ppoll(&watch, 1, limit, nullptr);
  if (n > 0) return ipc::wait_result::ok;
  if (n == 0) return ipc::wait_result::timed_out;
  if (errno == EINTR) return ipc::wait_result::interrupted;
  throw_errno("ppoll");
}

child_view view_of(const row& r) {
  return {r.ticket, r.pid, r.sentinel, r.start_time, r.method, r.daemon, r.orphan, r.ended, r.code};
}

}  // namespace

struct supervisor::table {
  std::mutex lock;
  std::map<child_ticket, row_ptr> rows;  // ordered by ticket: start order

  row_ptr find(child_ticket ticket) {
    const auto at = rows.find(ticket);
    if (at == rows.end()) throw_errno(ECHILD, "no such child in the process table");
    return at->second;
  }

  // Reaps the orphans that ended; returns how many still run. Lock held.
  std::size_t sweep_orphans() {
    std::size_t left = 0;
    for (auto at = rows.begin(); at != rows.end();) {
      row& r = *at->second;
      if (r.orphan) {
        settle(r);
        if (r.ended) {
          at = rows.erase(at);
          continue;
        }
        ++left;
      }
      ++at;
    }
    return left;
  }

  ipc::wait_result wait(const row_ptr& r, const ipc::deadline& until) {
    for (;;) {
      {
        const std::lock_guard held(lock);
        settle(*r);
        if (r->ended) return ipc::wait_result::ok;
      }
      const ipc::wait_result slept = sleep_on(*r, until);
      if (slept == ipc::wait_result::interrupted) return slept;
      if (slept == ipc::wait_result::timed_out && until.expired()) return slept;
    }
  }
};

namespace {

std::atomic<supervisor::table*> current_table{nullptr};

// In the child of a fork: a fresh, empty table. The parent's rows (and its
// lock, which another thread may have held at the fork) are left behind.
void fresh_table_in_child() { current_table.store(new supervisor::table, std::memory_order_release); }

supervisor::table& the_table() {
  static std::once_flag once;
  std::call_once(once, [] {
    current_table.store(new supervisor::table, std::memory_order_release);
    ::pthread_atfork(nullptr, nullptr, &fresh_table_in_child);
  });
  return *current_table.load(std::memory_order_acquire);
}

}  // namespace

const char* to_string(start_method method) noexcept {
  switch (method) {
    case start_method::fork: return "fork";
    case start_method::spawn: return "spawn";
    case start_method::forkserver: return "forkserver";
  }
  return "?";
}

// The core's reading of /proc/<pid>/stat (no streams: this is on the path of
// every start).
std::uint64_t process_start_time(pid_t pid) noexcept { return ipc::process_start_time(pid); }

supervisor& supervisor::of_this_process() {
  static supervisor instance;
  the_table();
  return instance;
}

forked supervisor::fork_child(const fork_hooks& hooks, bool daemon) {
  const pid_t pid = fork_process(hooks, {.die_with_parent = daemon});
  if (pid == 0) return {.pid = 0, .ticket = 0};
  try {
    return {pid, admit({.pid = pid, .method = start_method::fork, .daemon = daemon})};
  } catch (...) {
    // Unsupervised, it could not be waited for: it must not outlive this.
    ::kill(pid, SIGKILL);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    throw;
  }
}

child_ticket supervisor::admit(const admission& child) {
  auto r = std::make_shared<row>();
  r->pid = child.pid;
  r->method = child.method;
  r->daemon = child.daemon;
  r->reports_on_sentinel = child.status_fd >= 0;
  r->sentinel = child.status_fd >= 0 ? child.status_fd : open_process_sentinel(child.pid);
  // Only a child signalled by pid needs its identity checked: a pidfd
  // names its process for good, so its start time is read on demand (view).
  r->start_time = child.start_time != 0 || !r->reports_on_sentinel ? child.start_time : process_start_time(child.pid);
  r->ticket = ++last_ticket;
  ipc::process_note note;
  note.pid = child.pid;
  note.fresh = true;
  note.ppid = ipc::current_pid();
  note.stamp_started_at = true;
  note.role = ipc::process_role::child;
  note.state = ipc::process_state::starting;
  note.method = child.method == start_method::fork    ? ipc::process_method::fork
                : child.method == start_method::spawn ? ipc::process_method::spawn
                                                      : ipc::process_method::forkserver;
  ipc::note_process(note);
  table& t = the_table();
  const std::lock_guard held(t.lock);
  t.sweep_orphans();
  t.rows.emplace(r->ticket, r);
  return r->ticket;
}

std::optional<int> supervisor::poll(child_ticket ticket) {
  table& t = the_table();
  const std::lock_guard held(t.lock);
  row& r = *t.find(ticket);
  settle(r);
  return r.code;
}

ipc::wait_result supervisor::wait(child_ticket ticket, const ipc::deadline& until) {
  table& t = the_table();
  row_ptr r;
  {
    const std::lock_guard held(t.lock);
    r = t.find(ticket);
  }
  return t.wait(r, until);
}

void supervisor::signal(child_ticket ticket, int signo) {
  table& t = the_table();
  const std::lock_guard held(t.lock);
  const row& r = *t.find(ticket);
  if (r.ended) return;
  if (send_signal(r, signo) != 0 && errno != ESRCH) throw_errno("kill");
}

std::vector<child_ticket> supervisor::running() {
  table& t = the_table();
  const std::lock_guard held(t.lock);
  t.sweep_orphans();
  std::vector<child_ticket> tickets;
  for (const auto& [ticket, r] : t.rows) {
    if (r->orphan) continue;
    settle(*r);
    if (!r->code) tickets.push_back(ticket);
  }
  return tickets;
}

void supervisor::release(child_ticket ticket) {
  table& t = the_table();
  const std::lock_guard held(t.lock);
  const auto at = t.rows.find(ticket);
  if (at == t.rows.end()) return;
  row& r = *at->second;
  settle(r);
  if (r.ended) {
    t.rows.erase(at);
  } else {
    r.orphan = true;
  }
}

std::size_t supervisor::reap_orphans() {
  table& t = the_table();
  const std::lock_guard held(t.lock);
  return t.sweep_orphans();
}

std::size_t supervisor::end_children(const ipc::deadline& join_by) {
  table& t = the_table();
  std::vector<row_ptr> alive;
  {
    const std::lock_guard held(t.lock);
    for (const auto& [ticket, r] : t.rows) {
      settle(*r);
      if (r->ended) continue;
      if (r->daemon) send_signal(*r, SIGTERM);  // one that is gone already is fine
      alive.push_back(r);
    }
  }
  std::size_t left = 0;
  for (const row_ptr& r : alive) {
    const ipc::deadline until = r->orphan ? ipc::deadline::immediate() : join_by;
    ipc::wait_result outcome = ipc::wait_result::interrupted;
    while (outcome == ipc::wait_result::interrupted) outcome = t.wait(r, until);
    if (outcome != ipc::wait_result::ok) ++left;
  }
  const std::lock_guard held(t.lock);
  t.sweep_orphans();
  return left;
}

std::optional<child_view> supervisor::view(child_ticket ticket) {
  table& t = the_table();
  const std::lock_guard held(t.lock);
  const auto at = t.rows.find(ticket);
  if (at == t.rows.end()) return std::nullopt;
  row& r = *at->second;
  if (r.start_time == 0 && !r.reports_on_sentinel) {
    // Not reaped yet, so the pid still names the child (a zombie has it too).
    settle(r);
    if (!r.ended) r.start_time = process_start_time(r.pid);
  }
  return view_of(r);
}

std::pair<pid_t, int> supervisor::identity(child_ticket ticket) {
  table& t = the_table();
  const std::lock_guard held(t.lock);
  const row& r = *t.find(ticket);
  return {r.pid, r.sentinel};
}

std::size_t supervisor::size() {
  table& t = the_table();
  const std::lock_guard held(t.lock);
  return t.rows.size();
}

}  // namespace mphost::runtime
