// The process table of a resource registry (process_table.hpp): rows keyed
// by pid in the registry's third table, claimed with compare-and-swap like
// the other two (detail/registry_layout.hpp).
#include "mphost/ipc/process_table.hpp"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "detail/registry_layout.hpp"
#include "mphost/ipc/process_identity.hpp"
#include "mphost/ipc/resource_registry.hpp"

namespace mphost::ipc {
namespace detail {

std::uint64_t process_tag(pid_t pid) noexcept { return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(pid)) << 1) | 1; }

std::optional<process_record> read_process_slot(const process_slot& s) noexcept {
  const std::uint64_t tag = s.tag.load(std::memory_order_acquire);
  if ((tag & 1) == 0) return std::nullopt;
  process_record r;
  r.pid = s.pid.load(std::memory_order_relaxed);
  if (r.pid <= 0 || process_tag(r.pid) != tag) return std::nullopt;
  r.ppid = s.ppid.load(std::memory_order_relaxed);
  r.start_time = s.start_time.load(std::memory_order_relaxed);
  r.started_at_ns = s.started_at_ns.load(std::memory_order_relaxed);
  const auto role = s.role.load(std::memory_order_relaxed);
  const auto state = s.state.load(std::memory_order_relaxed);
  const auto method = s.method.load(std::memory_order_relaxed);
  r.role = role <= static_cast<std::uint8_t>(process_role::resource_tracker) ? static_cast<process_role>(role) : process_role::unknown;
  r.state = state <= static_cast<std::uint8_t>(process_state::exited) ? static_cast<process_state>(state) : process_state::unknown;
  r.method = method <= static_cast<std::uint8_t>(process_method::forkserver) ? static_cast<process_method>(method) : process_method::unknown;
  if (s.has_exit.load(std::memory_order_acquire) != 0) r.exit_code = s.exit_code.load(std::memory_order_relaxed);
  char text[process_name_words * 8];
  for (std::size_t i = 0; i < process_name_words; ++i) {
    const std::uint64_t w = s.name[i].load(std::memory_order_relaxed);
    std::memcpy(text + i * 8, &w, 8);
  }
  text[sizeof text - 1] = '\0';
  try {
    r.name.assign(text, ::strnlen(text, sizeof text));
  } catch (...) {
    return std::nullopt;
  }
  if (s.tag.load(std::memory_order_acquire) != tag) return std::nullopt;  // reused while we read
  return r;
}

}  // namespace detail

namespace {

using namespace detail;

std::size_t window_start(pid_t pid, std::size_t count) noexcept {
  return static_cast<std::size_t>((static_cast<std::uint64_t>(static_cast<std::uint32_t>(pid)) * 0x9e3779b97f4a7c15ull) >> 20) % count;
}

void clear_fields(process_slot& s, pid_t pid) noexcept {
  s.start_time.store(0, std::memory_order_relaxed);
  s.started_at_ns.store(0, std::memory_order_relaxed);
  s.ppid.store(0, std::memory_order_relaxed);
  s.role.store(0, std::memory_order_relaxed);
  s.state.store(0, std::memory_order_relaxed);
  s.method.store(0, std::memory_order_relaxed);
  s.has_exit.store(0, std::memory_order_relaxed);
  s.exit_code.store(0, std::memory_order_relaxed);
  for (auto& w : s.name) w.store(0, std::memory_order_relaxed);
  s.pid.store(pid, std::memory_order_relaxed);
}

// A row another process may take over: its process ended.
bool reusable(const process_slot& s) noexcept {
  if (s.state.load(std::memory_order_relaxed) == static_cast<std::uint8_t>(process_state::exited)) return true;
  const pid_t pid = s.pid.load(std::memory_order_relaxed);
  return pid > 0 && ::kill(pid, 0) != 0 && errno == ESRCH;
}

class table_view {
 public:
  table_view(const segment& seg) noexcept
      : header_(header_of(seg)), rows_(process_slots_of(seg)), count_(header_of(seg)->process_count) {}

  // The row of `pid`: the one there is, else a claimed one.
  process_slot* row_for(pid_t pid) noexcept {
    const std::uint64_t tag = process_tag(pid);
    if (process_slot* found = find(tag)) return found;
    for (int pass = 0; pass < 2; ++pass) {
      for (std::size_t i = 0; i < window(); ++i) {
        const std::size_t index = at(pid, i);
        process_slot& s = rows_[index];
        std::uint64_t seen = s.tag.load(std::memory_order_relaxed);
        if (pass == 0 ? seen != tag_free : ((seen & 1) == 0 || !reusable(s))) continue;
        mark_touched(header_->process_touched, process_group_slots, index);
        if (!s.tag.compare_exchange_strong(seen, tag_writing, std::memory_order_acquire, std::memory_order_relaxed)) continue;
        clear_fields(s, pid);
        s.tag.store(tag, std::memory_order_release);
        return settle(pid, index);
      }
    }
    header_->untracked.fetch_add(1, std::memory_order_relaxed);
    return nullptr;
  }

  template <typename F>
  void for_each(F&& fn) const {
    for_each_touched(header_->process_touched, process_group_slots, rows_, count_, fn);
  }

 private:
  std::size_t window() const noexcept { return std::min<std::size_t>(registry_probe_window, count_); }
  std::size_t at(pid_t pid, std::size_t i) const noexcept { return (window_start(pid, count_) + i) % count_; }

  process_slot* find(std::uint64_t tag) noexcept {
    const pid_t pid = static_cast<pid_t>(tag >> 1);
    for (std::size_t i = 0; i < window(); ++i) {
      process_slot& s = rows_[at(pid, i)];
      if (s.tag.load(std::memory_order_acquire) == tag) return &s;
    }
    return nullptr;
  }

  // Two processes (a parent and its child) may claim a row for the same pid
  // at once: both keep the first in window order and free the other.
  process_slot* settle(pid_t pid, std::size_t mine) noexcept {
    const std::uint64_t tag = process_tag(pid);
    for (std::size_t i = 0; i < window(); ++i) {
      const std::size_t index = at(pid, i);
      if (index == mine) return &rows_[mine];
      process_slot& other = rows_[index];
      if (other.tag.load(std::memory_order_acquire) == tag) {
        std::uint64_t expected = tag;
        rows_[mine].tag.compare_exchange_strong(expected, tag_free, std::memory_order_release, std::memory_order_relaxed);
        return &other;
      }
    }
    return &rows_[mine];
  }

  registry_header* header_;
  process_slot* rows_;
  std::size_t count_;
};

std::uint64_t unix_now_ns() noexcept {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
}

int rank(process_state state) noexcept {
  switch (state) {
    case process_state::ready: return 1;
    case process_state::starting: return 2;
    case process_state::running: return 3;
    case process_state::exited: return 4;
    default: return 0;
  }
}

void store_name(process_slot& s, std::string_view name) noexcept {
  char text[process_name_words * 8] = {};
  std::memcpy(text, name.data(), std::min(name.size(), max_process_name));
  for (std::size_t i = 0; i < process_name_words; ++i) {
    std::uint64_t w;
    std::memcpy(&w, text + i * 8, 8);
    s.name[i].store(w, std::memory_order_relaxed);
  }
}

}  // namespace

bool resource_registry::note_process(const process_note& note) noexcept {
  if (!segment_ || note.pid <= 0) return false;
  table_view table(segment_);
  process_slot* s = table.row_for(note.pid);
  if (s == nullptr) return false;
  if (note.fresh && s->state.load(std::memory_order_relaxed) == static_cast<std::uint8_t>(process_state::exited)) {
    clear_fields(*s, note.pid);
  }
  if (note.start_time != 0) {
    const std::uint64_t old = s->start_time.exchange(note.start_time, std::memory_order_relaxed);
    if (old != 0 && old != note.start_time) {  // a previous process with this pid
      clear_fields(*s, note.pid);
      s->start_time.store(note.start_time, std::memory_order_relaxed);
    }
  }
  if (note.stamp_started_at) {
    std::uint64_t unset = 0;
    s->started_at_ns.compare_exchange_strong(unset, unix_now_ns(), std::memory_order_relaxed);
  }
  if (note.ppid > 0) s->ppid.store(note.ppid, std::memory_order_relaxed);
  if (note.role != process_role::unknown) s->role.store(static_cast<std::uint8_t>(note.role), std::memory_order_relaxed);
  if (note.method != process_method::unknown) s->method.store(static_cast<std::uint8_t>(note.method), std::memory_order_relaxed);
  if (!note.name.empty()) store_name(*s, note.name);
  if (note.exit_code) {
    s->exit_code.store(*note.exit_code, std::memory_order_relaxed);
    s->has_exit.store(1, std::memory_order_release);
    s->state.store(static_cast<std::uint8_t>(process_state::exited), std::memory_order_release);
  } else if (note.state != process_state::unknown) {
    // States only move on (ready, starting, running, exited): the parent's
    // "starting" may arrive after the child's own "running", and a late
    // "running" after the exit code.
    std::uint8_t seen = s->state.load(std::memory_order_relaxed);
    while (rank(static_cast<process_state>(seen)) < rank(note.state) &&
           !s->state.compare_exchange_weak(seen, static_cast<std::uint8_t>(note.state), std::memory_order_release,
                                           std::memory_order_relaxed)) {
    }
  }
  return true;
}

std::vector<process_record> resource_registry::processes() const {
  std::vector<process_record> out;
  if (!segment_) return out;
  table_view(segment_).for_each([&](const process_slot& s) {
    if (auto r = read_process_slot(s)) out.push_back(std::move(*r));
  });
  return out;
}

bool note_process(const process_note& note) noexcept {
  resource_registry* r = current_registry();
  return r != nullptr && r->note_process(note);
}

bool note_this_process(process_role role, std::string_view name, process_method method) noexcept {
  process_note note;
  note.pid = current_pid();
  note.ppid = ::getppid();
  note.start_time = process_identity::current().start_time;
  note.stamp_started_at = true;
  note.role = role;
  note.state = process_state::running;
  note.method = method;
  note.name = name;
  return note_process(note);
}

std::vector<process_record> noted_processes() {
  resource_registry* r = current_registry();
  return r != nullptr ? r->processes() : std::vector<process_record>{};
}

const char* to_string(process_role role) noexcept {
  switch (role) {
    case process_role::main: return "main";
    case process_role::child: return "child";
    case process_role::forkserver: return "forkserver";
    case process_role::warm_spare: return "warm_spare";
    case process_role::manager_server: return "manager_server";
    case process_role::resource_tracker: return "resource_tracker";
    default: return "unknown";
  }
}

const char* to_string(process_state state) noexcept {
  switch (state) {
    case process_state::starting: return "starting";
    case process_state::ready: return "ready";
    case process_state::running: return "running";
    case process_state::exited: return "exited";
    default: return "unknown";
  }
}

const char* to_string(process_method method) noexcept {
  switch (method) {
    case process_method::fork: return "fork";
    case process_method::spawn: return "spawn";
    case process_method::forkserver: return "forkserver";
    default: return "unknown";
  }
}

process_role role_from_string(std::string_view text) noexcept {
  for (auto r : {process_role::main, process_role::child, process_role::forkserver, process_role::warm_spare,
                 process_role::manager_server, process_role::resource_tracker}) {
    if (text == to_string(r)) return r;
  }
  return process_role::unknown;
}

process_method method_from_string(std::string_view text) noexcept {
  for (auto m : {process_method::fork, process_method::spawn, process_method::forkserver}) {
    if (text == to_string(m)) return m;
  }
  return process_method::unknown;
}

}  // namespace mphost::ipc
