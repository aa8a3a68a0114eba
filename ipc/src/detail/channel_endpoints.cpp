// The endpoint side of channels: registration in the shared endpoint table,
// liveness of peers, the fork protocol and tickets. The doorbells are in
// detail/channel_bells.cpp.

#include <dirent.h>
#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "detail/channel_state.hpp"
#include "mphost/ipc/error.hpp"
#include "mphost/ipc/frame.hpp"
#include "mphost/ipc/process_identity.hpp"

namespace mphost::ipc {
namespace {

using namespace std::chrono_literals;
using detail::control;
using detail::endpoint_slot;

constexpr std::int64_t fork_place_validity_ns = 30'000'000'000;  // 30 s
constexpr std::int64_t reap_interval_ns = 2'000'000;              // 2 ms

std::uint8_t role_bits(endpoint_role role) noexcept { return static_cast<std::uint8_t>(role); }

void count_in(control& c, std::uint8_t role) noexcept {
  if (role & role_bits(endpoint_role::reader)) c.live_readers.fetch_add(1, std::memory_order_acq_rel);
  if (role & role_bits(endpoint_role::writer)) c.live_writers.fetch_add(1, std::memory_order_acq_rel);
  c.endpoints.fetch_add(1, std::memory_order_acq_rel);
}

// Returns true when this was the last endpoint of the channel.
bool count_out(control& c, std::uint8_t role) noexcept {
  if (role & role_bits(endpoint_role::reader)) c.live_readers.fetch_sub(1, std::memory_order_acq_rel);
  if (role & role_bits(endpoint_role::writer)) c.live_writers.fetch_sub(1, std::memory_order_acq_rel);
  return c.endpoints.fetch_sub(1, std::memory_order_acq_rel) == 1;
}

// Takes slot i if it is free; true on success.
bool take_free(control& c, std::uint32_t i, std::uint8_t role, std::uint8_t status, const process_identity& who,
               std::int64_t expiry_ns, std::uint32_t* generation) noexcept {
  endpoint_slot& s = detail::slot_at(c, i);
  std::uint64_t o = s.owner.load(std::memory_order_relaxed);
  if (detail::owner_status(o) != detail::slot_free) return false;
  const std::uint32_t gen = (detail::owner_generation(o) + 1) & 0xffff;
  const std::uint64_t mine = detail::make_owner(static_cast<std::uint32_t>(who.pid), gen, role, status);
  if (!s.owner.compare_exchange_strong(o, mine, std::memory_order_acq_rel, std::memory_order_relaxed)) return false;
  s.start_time.store(who.start_time, std::memory_order_relaxed);
  s.expiry_ns.store(static_cast<std::uint64_t>(expiry_ns), std::memory_order_relaxed);
  count_in(c, role);
  if (generation) *generation = gen;
  return true;
}

// Slot n is the first to reach into a page of the table: that page must be
// allocated before anyone touches it (a full /dev/shm must not SIGBUS).
bool page_ready(const channel::state& st, std::uint32_t n) noexcept {
  const std::uint64_t begin = st.ctl->table_offset + std::uint64_t{n} * sizeof(endpoint_slot);
  const std::uint64_t end = begin + sizeof(endpoint_slot);
  if ((end - 1) / detail::table_page == (begin - 1) / detail::table_page) return true;
  return st.control_segment->populate(begin, sizeof(endpoint_slot));
}

// Claims a slot: the first free one from free_hint (a lower bound of the
// free slots below the high-water mark), else a never-used one at the mark,
// else, once the mark is at the limit, any free one. Returns no_slot with
// `error` EMFILE (the table is full) or ENOSPC (no shared memory for the
// table's next page).
std::uint32_t claim_slot(const channel::state& st, std::uint8_t role, std::uint8_t status, const process_identity& who,
                         std::int64_t expiry_ns, std::uint32_t* generation, int* error = nullptr) noexcept {
  control& c = *st.ctl;
  std::uint32_t hint = c.free_hint.load(std::memory_order_acquire);
  const std::uint32_t mark = c.high_water.load(std::memory_order_acquire);
  for (std::uint32_t i = hint; i < mark; ++i) {
    if (take_free(c, i, role, status, who, expiry_ns, generation)) {
      c.free_hint.compare_exchange_strong(hint, i + 1, std::memory_order_acq_rel, std::memory_order_relaxed);
      return i;
    }
  }
  if (hint < mark) c.free_hint.compare_exchange_strong(hint, mark, std::memory_order_acq_rel, std::memory_order_relaxed);
  for (std::uint32_t n = c.high_water.load(std::memory_order_acquire); n < detail::max_endpoints;) {
    if (!page_ready(st, n)) {
      if (error) *error = ENOSPC;
      return detail::no_slot;
    }
    if (c.high_water.compare_exchange_weak(n, n + 1, std::memory_order_acq_rel, std::memory_order_acquire)) {
      if (take_free(c, n, role, status, who, expiry_ns, generation)) return n;
      n = c.high_water.load(std::memory_order_acquire);  // a scan took it first
    }
  }
  for (std::uint32_t i = 0; i < detail::max_endpoints; ++i) {
    if (take_free(c, i, role, status, who, expiry_ns, generation)) return i;
  }
  if (error) *error = EMFILE;
  return detail::no_slot;
}

[[noreturn]] void throw_no_slot(int error, const std::string& name) {
  if (error == ENOSPC) {
    throw std::system_error(ENOSPC, std::system_category(), "no shared memory left for an endpoint of channel " + name);
  }
  throw std::system_error(EMFILE, std::system_category(), "too many endpoints on channel " + name);
}

// Frees slot i if it still holds `expected`; true if this call freed it.
// `last` reports whether it was the channel's last endpoint.
bool free_slot(control& c, std::uint32_t i, std::uint64_t expected, bool* last) noexcept {
  endpoint_slot& s = detail::slot_at(c, i);
  const std::uint64_t freed = detail::make_owner(0, detail::owner_generation(expected), 0, detail::slot_free);
  if (!s.owner.compare_exchange_strong(expected, freed, std::memory_order_acq_rel, std::memory_order_relaxed)) return false;
  s.start_time.store(0, std::memory_order_relaxed);
  const bool was_last = count_out(c, detail::owner_role(expected));
  if (last) *last = was_last;
  std::uint32_t hint = c.free_hint.load(std::memory_order_relaxed);
  while (hint > i && !c.free_hint.compare_exchange_weak(hint, i, std::memory_order_acq_rel, std::memory_order_relaxed)) {
  }
  return true;
}

bool slot_alive(const endpoint_slot& s, std::uint64_t o) noexcept {
  const std::uint8_t status = detail::owner_status(o);
  if (status == detail::slot_free) return false;
  const std::uint64_t start = s.start_time.load(std::memory_order_relaxed);
  // The start time is read after the owner word; it is either this owner's
  // or 0 (cleared before the slot was freed), never a previous owner's.
  if (s.owner.load(std::memory_order_acquire) != o) return true;  // changed under us: look again later
  if (status == detail::slot_pending) {
    const std::uint64_t expiry = s.expiry_ns.load(std::memory_order_relaxed);
    if (expiry != 0 && static_cast<std::uint64_t>(detail::monotonic_ns()) > expiry) return false;
  }
  return process_seems_alive(static_cast<pid_t>(detail::owner_pid(o)), start);
}

// ---- Process-wide registry of endpoints, for fork and exec. ----

using registry = detail::endpoint_registry;
using detail::endpoints_registry;

// The process that forked (set in before_fork; read by the child).
pid_t parent_pid = 0;

void before_fork() noexcept {
  registry& r = endpoints_registry();
  r.mutex.lock();
  const process_identity me = process_identity::current();
  parent_pid = me.pid;
  const std::int64_t expiry = detail::monotonic_ns() + fork_place_validity_ns;
  // Every endpoint's mutexes are taken in one order, that of their
  // addresses (removals reorder the list), so forks from different threads
  // never take two of them in opposite orders.
  std::sort(r.states.begin(), r.states.end());
  for (std::size_t i = 0; i < r.states.size(); ++i) r.states[i]->registry_index = i;
  for (channel::state* s : r.states) {
    s->bell_mutex.lock();
    s->blocks->lock_for_fork();
    s->fork_slot = detail::no_slot;
    if (s->slot == detail::no_slot || s->closed.load(std::memory_order_relaxed)) continue;
    // Hold a place for the child's copy of this endpoint before the fork, so
    // no peer can see the channel without it even for an instant.
    s->fork_slot = claim_slot(*s, role_bits(s->role), detail::slot_pending, me, expiry, &s->fork_generation);
  }
}

void after_fork_in_parent() noexcept {
  registry& r = endpoints_registry();
  for (channel::state* s : r.states) {
    s->fork_slot = detail::no_slot;  // the place now belongs to the child
    s->blocks->unlock_after_fork();
    s->bell_mutex.unlock();
  }
  r.mutex.unlock();
}

void after_fork_in_child() noexcept {
  registry& r = endpoints_registry();
  const process_identity me = process_identity::current();
  for (channel::state* s : r.states) {
    const std::uint32_t i = s->fork_slot;
    s->fork_slot = detail::no_slot;
    s->slot = detail::no_slot;
    s->handed_over.store(0, std::memory_order_relaxed);  // the parent's tickets
    if (i != detail::no_slot) {
      // One compare-and-swap on the owner word the parent wrote before the
      // fork (known here, so the page is not read first: a write fault
      // only). The start time goes first: no reaper may pair the child's
      // pid with the parent's start time.
      endpoint_slot& slot = s->table[i];
      std::uint64_t o = detail::make_owner(static_cast<std::uint32_t>(parent_pid), s->fork_generation, role_bits(s->role),
                                           detail::slot_pending);
      const std::uint64_t mine = detail::make_owner(static_cast<std::uint32_t>(me.pid), s->fork_generation,
                                                    role_bits(s->role), detail::slot_active);
      slot.start_time.store(0, std::memory_order_relaxed);
      if (slot.owner.compare_exchange_strong(o, mine, std::memory_order_acq_rel, std::memory_order_relaxed)) {
        slot.start_time.store(me.start_time, std::memory_order_relaxed);
        slot.expiry_ns.store(0, std::memory_order_relaxed);
        s->slot = i;
        s->slot_generation = s->fork_generation;
      }
    }
    // The watcher thread does not exist here. An eventfd doorbell is the
    // parent's: forget it (deliberately leaked, never used again). A socket
    // doorbell is the Pipe end's socket, which the child keeps like any
    // inherited descriptor.
    if (s->bell && s->bell->is_socket()) {
      s->bell->reset_after_fork();
    } else if (s->bell) {
      ::close(s->bell->fd());
      (void)s->bell.release();
      detail::local_eventfd_bells.fetch_sub(1, std::memory_order_relaxed);
    }
    s->watcher = nullptr;
    s->watcher_stop.store(false, std::memory_order_relaxed);
    s->blocks->unlock_after_fork();
    s->bell_mutex.unlock();
  }
  r.mutex.unlock();
}

void register_state(channel::state* s) {
  registry& r = endpoints_registry();
  std::lock_guard lock(r.mutex);
  s->registry_index = r.states.size();
  r.states.push_back(s);
}

void unregister_state(channel::state* s) noexcept {
  registry& r = endpoints_registry();
  std::lock_guard lock(r.mutex);
  const std::size_t i = s->registry_index;
  if (i >= r.states.size() || r.states[i] != s) return;
  r.states[i] = r.states.back();
  r.states[i]->registry_index = i;
  r.states.pop_back();
  s->registry_index = ~std::size_t{0};
}

// `extras`: the channel may have made extra rings or blocks (control's
// extra_names), or it cannot be told.
void remove_names(const std::string& name, bool extras = true) noexcept {
  segment::remove(name);
  if (!extras) return;
  // Extra rings and undelivered blocks are named <name>.<something>.
  const std::string prefix = (name[0] == '/' ? name.substr(1) : name) + ".";
  if (DIR* dir = ::opendir("/dev/shm")) {
    std::vector<std::string> doomed;
    while (dirent* e = ::readdir(dir)) {
      if (std::strncmp(e->d_name, prefix.c_str(), prefix.size()) == 0) doomed.emplace_back(e->d_name);
    }
    ::closedir(dir);
    for (const auto& n : doomed) segment::remove(n);
  }
}

}  // namespace

namespace detail {

std::atomic<int> local_eventfd_bells{0};

endpoint_registry& endpoints_registry() {
  static endpoint_registry* r = [] {
    (void)current_pid();  // its fork handler must run before ours
    // The socket table's fork handler must take its lock after ours took
    // the bell mutexes, under which the table is used (fileno() closing a
    // ring end): handlers registered earlier prepare later.
    doorbell::init_socket_table();
    auto* created = new endpoint_registry;
    ::pthread_atfork(&before_fork, &after_fork_in_parent, &after_fork_in_child);
    return created;
  }();
  return *r;
}

}  // namespace detail

// ---- channel::state: endpoint table ----

void channel::state::attach(std::uint64_t ticket) {
  register_state(this);
  control& c = *ctl;
  const process_identity me = process_identity::current();
  if (ticket != 0) {
    const std::uint32_t i = static_cast<std::uint32_t>(ticket >> 16);
    const std::uint32_t gen = static_cast<std::uint32_t>(ticket & 0xffff);
    if (i < c.high_water.load(std::memory_order_acquire)) {
      endpoint_slot& s = detail::slot_at(c, i);
      std::uint64_t o = s.owner.load(std::memory_order_acquire);
      if (detail::owner_status(o) == detail::slot_pending && detail::owner_generation(o) == gen &&
          (detail::owner_role(o) & role_bits(role)) == role_bits(role)) {
        // Take the place over, keeping its role (counts stay as they are).
        const std::uint64_t mine = detail::make_owner(static_cast<std::uint32_t>(me.pid), gen, detail::owner_role(o),
                                                      detail::slot_active);
        s.start_time.store(0, std::memory_order_relaxed);
        if (s.owner.compare_exchange_strong(o, mine, std::memory_order_acq_rel, std::memory_order_relaxed)) {
          s.start_time.store(me.start_time, std::memory_order_relaxed);
          s.expiry_ns.store(0, std::memory_order_relaxed);
          slot = i;
          slot_generation = gen;
          role = static_cast<endpoint_role>(detail::owner_role(o));
          return;
        }
      }
    }
  }
  std::uint32_t gen = 0;
  int error = 0;
  std::uint32_t i = claim_slot(*this, role_bits(role), detail::slot_active, me, 0, &gen, &error);
  if (i == detail::no_slot && reap_dead()) i = claim_slot(*this, role_bits(role), detail::slot_active, me, 0, &gen, &error);
  if (i == detail::no_slot) {
    unregister_state(this);
    throw_no_slot(error, name);
  }
  slot = i;
  slot_generation = gen;
  poke_watchers();  // a doorbell that said "closed" looks again
}

void channel::state::ensure_slot() {
  if (slot != detail::no_slot) return;
  // A close by another thread clears the slot too: a send racing it must
  // not register the closed endpoint again (nothing would free the place,
  // and the channel's names would outlive its last close).
  if (closed.load(std::memory_order_seq_cst)) throw std::system_error(errc::handle_closed);
  std::uint32_t gen = 0;
  int error = 0;
  std::uint32_t i = claim_slot(*this, role_bits(role), detail::slot_active, process_identity::current(), 0, &gen, &error);
  if (i == detail::no_slot && reap_dead()) {
    i = claim_slot(*this, role_bits(role), detail::slot_active, process_identity::current(), 0, &gen, &error);
  }
  if (i == detail::no_slot) throw_no_slot(error, name);
  slot_generation = gen;
  slot.store(i, std::memory_order_seq_cst);
  if (!closed.load(std::memory_order_seq_cst)) return;
  // The close came meanwhile. Either it saw this place and freed it, or we
  // free it here: the compare-and-swap lets only one of us count it out.
  bool last = false;
  const std::uint64_t mine = detail::make_owner(static_cast<std::uint32_t>(current_pid()), gen, role_bits(role),
                                                detail::slot_active);
  if (free_slot(*ctl, i, mine, &last) && last && (ctl->flags & detail::flag_remove_when_unused) &&
      !ctl->removed.exchange(1)) {
    remove_names(name, ctl->extra_names.load(std::memory_order_acquire) != 0);
  }
  throw std::system_error(errc::handle_closed);
}

void channel::state::detach() noexcept {
  if (closed.exchange(true)) return;
  stop_watcher();
  {
    std::lock_guard lock(bell_mutex);
    if (bell && !bell->is_socket()) detail::local_eventfd_bells.fetch_sub(1, std::memory_order_acq_rel);
  }
  unregister_state(this);
  bool last = false;
  std::uint32_t near = 0;
  const std::uint32_t held_slot = slot.exchange(detail::no_slot, std::memory_order_seq_cst);
  if (held_slot != detail::no_slot) {
    // Only our own registration (a forked child must not free the
    // parent's): the CAS expects exactly our owner word, so the slot is not
    // read first (in a fork child, a read fault maps a window of pages).
    const std::uint64_t mine = detail::make_owner(static_cast<std::uint32_t>(current_pid()), slot_generation,
                                                  role_bits(role), detail::slot_active);
    free_slot(*ctl, held_slot, mine, &last);
    near = held_slot;
  }
  wake_all_waiters();
  // The last writer gone: end of file, which readers' descriptors show.
  if (!last && ctl->live_writers.load(std::memory_order_acquire) == 0) ring_bells();
  if (last && (ctl->flags & detail::flag_remove_when_unused) && !ctl->removed.exchange(1)) {
    remove_names(name, ctl->extra_names.load(std::memory_order_acquire) != 0);
  }
  // Peers that died without closing must not keep the names alive: if only
  // dead endpoints remain, reaping them makes this the last close. One live
  // endpoint is enough to stop looking (dead ones are reaped by the waits
  // and by the next claim that needs their places).
  if (!last && ctl->endpoints.load(std::memory_order_acquire) != 0 && !any_live_endpoint(near)) reap_dead();
}

bool channel::state::any_live_endpoint(std::uint32_t from) const noexcept {
  const control& c = *ctl;
  const std::uint32_t mark = c.high_water.load(std::memory_order_acquire);
  if (from >= mark) from = 0;
  for (std::uint32_t k = 0; k < mark; ++k) {
    const std::uint32_t i = from + k < mark ? from + k : from + k - mark;
    const endpoint_slot& s = detail::slot_at(c, i);
    const std::uint64_t o = s.owner.load(std::memory_order_acquire);
    if (detail::owner_status(o) != detail::slot_free && slot_alive(s, o)) return true;
  }
  return false;
}

bool channel::state::reap_dead() noexcept {
  control& c = *ctl;
  bool any = false;
  bool last = false;
  const std::uint32_t mark = c.high_water.load(std::memory_order_acquire);
  for (std::uint32_t i = 0; i < mark; ++i) {
    const endpoint_slot& s = detail::slot_at(c, i);
    const std::uint64_t o = s.owner.load(std::memory_order_acquire);
    if (detail::owner_status(o) == detail::slot_free) continue;
    if (slot_alive(s, o)) continue;
    bool was_last = false;
    if (free_slot(c, i, o, &was_last)) {
      any = true;
      last = last || was_last;
    }
  }
  last_reap_ns.store(detail::monotonic_ns(), std::memory_order_relaxed);
  if (any) wake_all_waiters();
  if (any && !last && c.live_writers.load(std::memory_order_acquire) == 0) ring_bells();
  if (last && (c.flags & detail::flag_remove_when_unused) && !c.removed.exchange(1)) {
    remove_names(name, c.extra_names.load(std::memory_order_acquire) != 0);
  }
  return any;
}

void channel::state::maybe_reap() noexcept {
  const std::int64_t now = detail::monotonic_ns();
  if (now - last_reap_ns.load(std::memory_order_relaxed) >= reap_interval_ns) reap_dead();
}

bool channel::state::writer_gone(std::uint32_t writer) const noexcept {
  const std::uint32_t i = writer >> 16;
  if (i >= ctl->high_water.load(std::memory_order_acquire)) return true;
  const endpoint_slot& s = detail::slot_at(*ctl, i);
  const std::uint64_t o = s.owner.load(std::memory_order_acquire);
  if (detail::owner_status(o) != detail::slot_active || detail::owner_generation(o) != (writer & 0xffff)) return true;
  return !slot_alive(s, o);
}

void channel::state::wake_all_waiters() noexcept {
  control& c = *ctl;
  // The bumps make any wait that read a word before them return at once;
  // the wake-up system call is only for sleepers, who announced themselves
  // (readers_waiting, writers_waiting, watchers; seq_cst, as here) before
  // their last look. A close in a process holding thousands of ends thus
  // makes no system call for the quiet ones.
  c.data_seq.fetch_add(1, std::memory_order_seq_cst);
  if (c.readers_waiting.load(std::memory_order_seq_cst) != 0) futex_wake_all(c.data_seq);
  c.space_seq.fetch_add(1, std::memory_order_seq_cst);
  if (c.writers_waiting.load(std::memory_order_seq_cst) != 0) futex_wake_all(c.space_seq);
  c.watch_seq.fetch_add(1, std::memory_order_seq_cst);
  if (c.watchers.load(std::memory_order_seq_cst) != 0) futex_wake_all(c.watch_seq);
}

void channel::state::poke_watchers() noexcept {
  if (ctl->watchers.load(std::memory_order_relaxed) == 0) return;
  ctl->watch_seq.fetch_add(1, std::memory_order_acq_rel);
  futex_wake_all(ctl->watch_seq);
}

// ---- channel: the public endpoint calls ----

std::uint64_t channel::hand_over(endpoint_role r, std::chrono::seconds validity) {
  const std::shared_ptr<state> held = state_.load(std::memory_order_acquire);
  if (!held || held->closed.load()) throw std::system_error(errc::handle_closed);
  const std::int64_t expiry =
      detail::monotonic_ns() + std::chrono::duration_cast<std::chrono::nanoseconds>(validity).count();
  std::uint32_t gen = 0;
  int error = 0;
  std::uint32_t i = claim_slot(*held, role_bits(r), detail::slot_pending, process_identity::current(), expiry, &gen, &error);
  if (i == detail::no_slot && held->reap_dead()) {
    i = claim_slot(*held, role_bits(r), detail::slot_pending, process_identity::current(), expiry, &gen, &error);
  }
  if (i == detail::no_slot) throw_no_slot(error, held->name);
  held->handed_over.fetch_add(1, std::memory_order_relaxed);
  held->poke_watchers();
  return (std::uint64_t{i} << 16) | gen;
}

void channel::withdraw_hand_overs() noexcept {
  const std::shared_ptr<state> held = state_.load(std::memory_order_acquire);
  if (!held || held->closed.load()) return;
  if (held->handed_over.exchange(0, std::memory_order_acq_rel) == 0) return;
  detail::control& c = *held->ctl;
  const auto me = static_cast<std::uint32_t>(current_pid());
  bool last = false;
  const std::uint32_t mark = c.high_water.load(std::memory_order_acquire);
  for (std::uint32_t i = 0; i < mark; ++i) {
    const std::uint64_t o = detail::slot_at(c, i).owner.load(std::memory_order_acquire);
    if (detail::owner_status(o) != detail::slot_pending || detail::owner_pid(o) != me) continue;
    bool was_last = false;
    if (free_slot(c, i, o, &was_last)) last = last || was_last;
  }
  // Another thread may have closed this endpoint meanwhile (its close then
  // was not the last, as these places were held): the last place freed
  // here is then the channel's last close, and removes its names.
  if (last && (c.flags & detail::flag_remove_when_unused) && !c.removed.exchange(1)) {
    remove_names(held->name, c.extra_names.load(std::memory_order_acquire) != 0);
  }
}

channel::endpoint_counts channel::endpoints() {
  const std::shared_ptr<state> held = state_.load(std::memory_order_acquire);
  if (!held || held->closed.load()) throw std::system_error(errc::handle_closed);
  held->reap_dead();
  return {held->ctl->live_readers.load(std::memory_order_acquire), held->ctl->live_writers.load(std::memory_order_acquire)};
}

bool channel::remove(const std::string& name) noexcept {
  if (name.empty()) return false;
  // Tell endpoints still open not to recycle blocks into a removed channel.
  try {
    segment seg = segment::open(name);
    auto* c = static_cast<control*>(seg.base());
    if (seg.size() >= sizeof(control) && c->magic == detail::control_magic) c->removed.store(1, std::memory_order_release);
  } catch (...) {
  }
  const bool existed = segment::remove(name);
  remove_names(name);
  return existed;
}

void release_endpoints_before_exec() noexcept {
  // Runs in a forked child, single-threaded: no locking.
  registry& r = endpoints_registry();
  const auto me = static_cast<std::uint32_t>(::getpid());
  for (channel::state* s : r.states) {
    if (s->slot == detail::no_slot) continue;
    const std::uint64_t o = detail::slot_at(*s->ctl, s->slot).owner.load(std::memory_order_acquire);
    if (detail::owner_pid(o) == me && detail::owner_generation(o) == s->slot_generation) {
      free_slot(*s->ctl, s->slot, o, nullptr);
    }
    s->slot = detail::no_slot;
  }
}

}  // namespace mphost::ipc
