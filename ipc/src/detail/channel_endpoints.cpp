// The endpoint side of channels: registration in the shared endpoint table,
// liveness of peers, the fork protocol, tickets, and the doorbell watcher.

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

// Eventfd doorbells in this process (channel::fileno of a reading endpoint
// without a socket doorbell); while there are none, sends and recvs do not
// look for them.
std::atomic<int> local_eventfd_bells{0};

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

// Claims a free slot; no_slot when the table is full.
std::uint32_t claim_slot(control& c, std::uint8_t role, std::uint8_t status, const process_identity& who,
                         std::int64_t expiry_ns, std::uint32_t* generation) noexcept {
  for (std::uint32_t i = 0; i < detail::max_endpoints; ++i) {
    endpoint_slot& s = c.slots[i];
    std::uint64_t o = s.owner.load(std::memory_order_relaxed);
    if (detail::owner_status(o) != detail::slot_free) continue;
    const std::uint32_t gen = (detail::owner_generation(o) + 1) & 0xffff;
    const std::uint64_t mine = detail::make_owner(static_cast<std::uint32_t>(who.pid), gen, role, status);
    if (s.owner.compare_exchange_strong(o, mine, std::memory_order_acq_rel, std::memory_order_relaxed)) {
      s.start_time.store(who.start_time, std::memory_order_relaxed);
      s.expiry_ns.store(static_cast<std::uint64_t>(expiry_ns), std::memory_order_relaxed);
      count_in(c, role);
      if (generation) *generation = gen;
      return i;
    }
  }
  return detail::no_slot;
}

// Frees slot i if it still holds `expected`; true if this call freed it.
// `last` reports whether it was the channel's last endpoint.
bool free_slot(control& c, std::uint32_t i, std::uint64_t expected, bool* last) noexcept {
  endpoint_slot& s = c.slots[i];
  const std::uint64_t freed = detail::make_owner(0, detail::owner_generation(expected), 0, detail::slot_free);
  if (!s.owner.compare_exchange_strong(expected, freed, std::memory_order_acq_rel, std::memory_order_relaxed)) return false;
  s.start_time.store(0, std::memory_order_relaxed);
  const bool was_last = count_out(c, detail::owner_role(expected));
  if (last) *last = was_last;
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
  return process_is_alive(static_cast<pid_t>(detail::owner_pid(o)), start);
}

// ---- Process-wide registry of endpoints, for fork and exec. ----

struct registry {
  std::mutex mutex;
  std::vector<channel::state*> states;
};

registry& endpoints_registry();

void before_fork() noexcept {
  registry& r = endpoints_registry();
  r.mutex.lock();
  const process_identity me = process_identity::current();
  const std::int64_t expiry = detail::monotonic_ns() + fork_place_validity_ns;
  for (channel::state* s : r.states) {
    s->bell_mutex.lock();
    s->blocks->lock_for_fork();
    s->fork_slot = detail::no_slot;
    if (s->slot == detail::no_slot || s->closed.load(std::memory_order_relaxed)) continue;
    // Hold a place for the child's copy of this endpoint before the fork, so
    // no peer can see the channel without it even for an instant.
    s->fork_slot = claim_slot(*s->ctl, role_bits(s->role), detail::slot_pending, me, expiry, nullptr);
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
    if (i != detail::no_slot) {
      endpoint_slot& slot = s->ctl->slots[i];
      std::uint64_t o = slot.owner.load(std::memory_order_acquire);
      if (detail::owner_status(o) == detail::slot_pending) {
        const std::uint64_t mine = detail::make_owner(static_cast<std::uint32_t>(me.pid), detail::owner_generation(o),
                                                      detail::owner_role(o), detail::slot_active);
        slot.start_time.store(0, std::memory_order_relaxed);
        if (slot.owner.compare_exchange_strong(o, mine, std::memory_order_acq_rel, std::memory_order_relaxed)) {
          slot.start_time.store(me.start_time, std::memory_order_relaxed);
          slot.expiry_ns.store(0, std::memory_order_relaxed);
          s->slot = i;
          s->slot_generation = detail::owner_generation(o);
        }
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
      local_eventfd_bells.fetch_sub(1, std::memory_order_relaxed);
    }
    s->watcher = nullptr;
    s->watcher_stop.store(false, std::memory_order_relaxed);
    s->blocks->unlock_after_fork();
    s->bell_mutex.unlock();
  }
  r.mutex.unlock();
}

registry& endpoints_registry() {
  static registry* r = [] {
    (void)current_pid();  // its fork handler must run before ours
    auto* created = new registry;
    ::pthread_atfork(&before_fork, &after_fork_in_parent, &after_fork_in_child);
    return created;
  }();
  return *r;
}

void register_state(channel::state* s) {
  registry& r = endpoints_registry();
  std::lock_guard lock(r.mutex);
  r.states.push_back(s);
}

void unregister_state(channel::state* s) noexcept {
  registry& r = endpoints_registry();
  std::lock_guard lock(r.mutex);
  r.states.erase(std::remove(r.states.begin(), r.states.end(), s), r.states.end());
}

void remove_names(const std::string& name) noexcept {
  segment::remove(name);
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

// ---- channel::state: endpoint table ----

void channel::state::attach(std::uint64_t ticket) {
  register_state(this);
  control& c = *ctl;
  const process_identity me = process_identity::current();
  if (ticket != 0) {
    const std::uint32_t i = static_cast<std::uint32_t>(ticket >> 16);
    const std::uint32_t gen = static_cast<std::uint32_t>(ticket & 0xffff);
    if (i < detail::max_endpoints) {
      endpoint_slot& s = c.slots[i];
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
  std::uint32_t i = claim_slot(c, role_bits(role), detail::slot_active, me, 0, &gen);
  if (i == detail::no_slot && reap_dead()) i = claim_slot(c, role_bits(role), detail::slot_active, me, 0, &gen);
  if (i == detail::no_slot) {
    unregister_state(this);
    throw std::system_error(EMFILE, std::system_category(), "too many endpoints on channel " + name);
  }
  slot = i;
  slot_generation = gen;
  poke_watchers();  // a doorbell that said "closed" looks again
}

void channel::state::ensure_slot() {
  if (slot != detail::no_slot) return;
  std::uint32_t gen = 0;
  const std::uint32_t i = claim_slot(*ctl, role_bits(role), detail::slot_active, process_identity::current(), 0, &gen);
  if (i == detail::no_slot) throw std::system_error(EMFILE, std::system_category(), "too many endpoints on channel " + name);
  slot = i;
  slot_generation = gen;
}

void channel::state::detach() noexcept {
  if (closed.exchange(true)) return;
  stop_watcher();
  {
    std::lock_guard lock(bell_mutex);
    if (bell && !bell->is_socket()) local_eventfd_bells.fetch_sub(1, std::memory_order_acq_rel);
  }
  unregister_state(this);
  bool last = false;
  if (slot != detail::no_slot) {
    endpoint_slot& s = ctl->slots[slot];
    const std::uint64_t o = s.owner.load(std::memory_order_acquire);
    // Only our own registration: a forked child must not free the parent's.
    if (detail::owner_pid(o) == static_cast<std::uint32_t>(current_pid()) &&
        detail::owner_generation(o) == slot_generation && detail::owner_status(o) == detail::slot_active) {
      free_slot(*ctl, slot, o, &last);
    }
    slot = detail::no_slot;
  }
  wake_all_waiters();
  // The last writer gone: end of file, which readers' descriptors show.
  if (!last && ctl->live_writers.load(std::memory_order_acquire) == 0) ring_bells();
  if (last && (ctl->flags & detail::flag_remove_when_unused) && !ctl->removed.exchange(1)) remove_names(name);
  // Peers that died without closing must not keep the names alive: if only
  // dead endpoints remain, reaping them makes this the last close.
  if (!last && ctl->endpoints.load(std::memory_order_acquire) != 0) reap_dead();
}

bool channel::state::reap_dead() noexcept {
  control& c = *ctl;
  bool any = false;
  bool last = false;
  for (std::uint32_t i = 0; i < detail::max_endpoints; ++i) {
    const std::uint64_t o = c.slots[i].owner.load(std::memory_order_acquire);
    if (detail::owner_status(o) == detail::slot_free) continue;
    if (slot_alive(c.slots[i], o)) continue;
    bool was_last = false;
    if (free_slot(c, i, o, &was_last)) {
      any = true;
      last = last || was_last;
    }
  }
  last_reap_ns.store(detail::monotonic_ns(), std::memory_order_relaxed);
  if (any) wake_all_waiters();
  if (any && !last && c.live_writers.load(std::memory_order_acquire) == 0) ring_bells();
  if (last && (c.flags & detail::flag_remove_when_unused) && !c.removed.exchange(1)) remove_names(name);
  return any;
}

void channel::state::maybe_reap() noexcept {
  const std::int64_t now = detail::monotonic_ns();
  if (now - last_reap_ns.load(std::memory_order_relaxed) >= reap_interval_ns) reap_dead();
}

bool channel::state::writer_gone(std::uint32_t writer) const noexcept {
  const std::uint32_t i = writer >> 16;
  if (i >= detail::max_endpoints) return true;
  const endpoint_slot& s = ctl->slots[i];
  const std::uint64_t o = s.owner.load(std::memory_order_acquire);
  if (detail::owner_status(o) != detail::slot_active || detail::owner_generation(o) != (writer & 0xffff)) return true;
  return !slot_alive(s, o);
}

void channel::state::wake_all_waiters() noexcept {
  control& c = *ctl;
  c.data_seq.fetch_add(1, std::memory_order_acq_rel);
  futex_wake_all(c.data_seq);
  c.space_seq.fetch_add(1, std::memory_order_acq_rel);
  futex_wake_all(c.space_seq);
  c.watch_seq.fetch_add(1, std::memory_order_acq_rel);
  futex_wake_all(c.watch_seq);
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
  std::uint32_t i = claim_slot(*held->ctl, role_bits(r), detail::slot_pending, process_identity::current(), expiry, &gen);
  if (i == detail::no_slot && held->reap_dead()) {
    i = claim_slot(*held->ctl, role_bits(r), detail::slot_pending, process_identity::current(), expiry, &gen);
  }
  if (i == detail::no_slot) throw std::system_error(EMFILE, std::system_category(), "too many endpoints on channel");
  held->poke_watchers();
  return (std::uint64_t{i} << 16) | gen;
}

void channel::withdraw_hand_overs() noexcept {
  const std::shared_ptr<state> held = state_.load(std::memory_order_acquire);
  if (!held || held->closed.load()) return;
  detail::control& c = *held->ctl;
  const auto me = static_cast<std::uint32_t>(current_pid());
  bool last = false;
  for (std::uint32_t i = 0; i < detail::max_endpoints; ++i) {
    const std::uint64_t o = c.slots[i].owner.load(std::memory_order_acquire);
    if (detail::owner_status(o) != detail::slot_pending || detail::owner_pid(o) != me) continue;
    bool was_last = false;
    if (free_slot(c, i, o, &was_last)) last = last || was_last;
  }
  // This endpoint is still open, so withdrawing cannot make the channel unused.
  (void)last;
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
    const std::uint64_t o = s->ctl->slots[s->slot].owner.load(std::memory_order_acquire);
    if (detail::owner_pid(o) == me && detail::owner_generation(o) == s->slot_generation) {
      free_slot(*s->ctl, s->slot, o, nullptr);
    }
    s->slot = detail::no_slot;
  }
}

// ---- doorbells ----

namespace {

// Whether a recv would find something: a committed message at the head of
// the ring being read (after padding and abandoned frames), a frame whose
// writer is gone (recv discards it, so look), a later ring, corrupt bytes
// (recv reports them), or no writers left. Lock-free; exact for the moment
// it looks.
bool looks_readable(channel::state& s, std::shared_ptr<detail::ring_map>& ring, bool check_writers) {
  control& c = *s.ctl;
  if (c.live_writers.load(std::memory_order_acquire) == 0) return true;
  const std::uint64_t hr = c.head_ring.load(std::memory_order_acquire);
  if (!ring || ring->id != hr) ring = s.map_ring(hr);
  std::uint64_t head = ring->hdr->head.load(std::memory_order_acquire);
  const std::uint64_t tail = ring->hdr->tail.load(std::memory_order_acquire);
  if (tail - head > ring->capacity) return true;
  while (head != tail) {
    frame_info f{};
    if (!inspect_frame(ring->data, ring->capacity, head & ring->mask, tail - head, f)) return true;
    if (f.state == frame_state::reserved) return check_writers && s.writer_gone(f.writer);
    if (f.kind == frame_kind::data || f.kind == frame_kind::block) return true;
    head += f.size;
  }
  return c.tail_ring.load(std::memory_order_acquire) > ring->id;
}

bool readable_now(channel::state& s) noexcept {
  std::shared_ptr<detail::ring_map> ring;
  try {
    return looks_readable(s, ring, false);
  } catch (...) {
    return true;  // let recv surface the failure
  }
}

// Rings (or, with ring == false, settles) this process's eventfd doorbells
// of s's channel, each under its bell_mutex, so that a watcher thread's
// look-then-act cannot interleave with ours.
void touch_local_bells(channel::state& s, bool ring) noexcept {
  registry& r = endpoints_registry();
  std::lock_guard lock(r.mutex);
  for (channel::state* other : r.states) {
    if (other->ctl == nullptr || other->closed.load(std::memory_order_relaxed)) continue;
    std::lock_guard bell_lock(other->bell_mutex);
    if (!other->bell || other->bell->is_socket() || other->name != s.name) continue;
    if (ring || readable_now(*other)) {
      other->bell->ring();
    } else {
      other->bell->clear();
    }
  }
}

// Writes the marker, under c.bell_lock. The flag is set first: a reader that
// sees the marker (and then takes the last message) sees the flag too, and
// comes for the lock to clear it.
void ring_socket_locked(control& c, std::uint64_t socket) noexcept {
  c.bell_rung.store(1, std::memory_order_seq_cst);
  if (!doorbell::ring_socket(socket)) c.bell_rung.store(0, std::memory_order_seq_cst);
}

// Once the channel's socket doorbell is armed, a reading end's duplicate of
// the peer socket (its ring end, used to arm) goes: a socket whose peer is
// held only by the writers reads end of file when they are all gone.
// Under s.bell_mutex.
void drop_ring_end(channel::state& s) noexcept {
  if (s.bell && s.bell->is_socket() && s.bell->ring_fd() >= 0 &&
      s.ctl->bell_armed.load(std::memory_order_acquire) != 0) {
    s.bell->drop_ring_end();
  }
}

void watcher_main(channel::state* s) {
  control& c = *s->ctl;
  c.watchers.fetch_add(1, std::memory_order_seq_cst);
  bool check_writers = false;
  while (!s->watcher_stop.load(std::memory_order_acquire)) {
    const std::uint32_t seq = c.watch_seq.load(std::memory_order_acquire);
    {
      std::lock_guard lock(s->bell_mutex);
      bool ready = true;
      std::shared_ptr<detail::ring_map> ring;
      try {
        ready = looks_readable(*s, ring, check_writers);
      } catch (...) {
      }
      if (s->bell) {
        if (ready) {
          s->bell->ring();
        } else {
          s->bell->clear();
        }
      }
    }
    check_writers = false;
    if (futex_wait(c.watch_seq, seq, deadline::after(100ms)) == wait_result::timed_out) {
      s->maybe_reap();
      check_writers = true;
    }
  }
  c.watchers.fetch_sub(1, std::memory_order_relaxed);
}

}  // namespace

void channel::state::ring_bells() noexcept {
  control& c = *ctl;
  // Pairs with settle_bells: either it sees what we committed, or we see
  // the doorbell quiet and ring it.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  const std::uint64_t socket = c.bell_socket.load(std::memory_order_acquire);
  if (socket != 0 && c.bell_armed.load(std::memory_order_seq_cst) != 0 &&
      c.bell_rung.load(std::memory_order_seq_cst) == 0) {
    detail::scoped_lock lock(c.bell_lock);
    if (c.bell_rung.load(std::memory_order_relaxed) == 0) ring_socket_locked(c, socket);
  }
  if (local_eventfd_bells.load(std::memory_order_acquire) != 0) touch_local_bells(*this, true);
}

void channel::state::settle_bells() noexcept {
  control& c = *ctl;
  if (c.bell_armed.load(std::memory_order_relaxed) != 0 && bell && bell->ring_fd() >= 0) {
    std::lock_guard lock(bell_mutex);
    drop_ring_end(*this);
  }
  if (c.bell_rung.load(std::memory_order_seq_cst) != 0 && bell && bell->is_socket() && !readable_now(*this)) {
    detail::scoped_lock lock(c.bell_lock);
    if (c.bell_rung.load(std::memory_order_relaxed) != 0) {
      c.bell_rung.store(0, std::memory_order_seq_cst);
      std::atomic_thread_fence(std::memory_order_seq_cst);
      if (readable_now(*this)) {
        c.bell_rung.store(1, std::memory_order_relaxed);  // its marker is still there
      } else {
        // Every marker was written under bell_lock, so all are in the socket.
        bell->clear();
      }
    }
  }
  if (local_eventfd_bells.load(std::memory_order_acquire) != 0) touch_local_bells(*this, false);
}

bool channel::state::socket_peer_gone() const noexcept {
  // While this end keeps its duplicate of the peer (not armed yet) the
  // socket cannot read end of file: no system call then.
  return bell && bell->is_socket() && bell->ring_fd() < 0 &&
         (static_cast<std::uint8_t>(role) & role_bits(endpoint_role::reader)) && bell->at_end_of_file();
}

int channel::fileno() {
  const std::shared_ptr<state> held = state_.load(std::memory_order_acquire);
  if (!held || held->closed.load()) throw std::system_error(errc::handle_closed);
  state& s = *held;
  std::lock_guard lock(s.bell_mutex);
  if (s.bell && s.bell->is_socket()) {
    // Rung by the channel's writers from now on, and by us now if a message
    // is already there (through our ring end: the writers' process may
    // hold none of the socket any more).
    control& c = *s.ctl;
    if (c.bell_socket.load(std::memory_order_acquire) != 0 && c.bell_armed.load(std::memory_order_acquire) == 0) {
      detail::scoped_lock arm(c.bell_lock);
      c.bell_armed.store(1, std::memory_order_seq_cst);
      std::atomic_thread_fence(std::memory_order_seq_cst);
      if (c.bell_rung.load(std::memory_order_relaxed) == 0 && readable_now(s)) {
        ring_socket_locked(c, c.bell_socket.load(std::memory_order_relaxed));
      }
    }
    drop_ring_end(s);
    return s.bell->fd();
  }
  if (!(static_cast<std::uint8_t>(s.role) & role_bits(endpoint_role::reader))) {
    throw std::system_error(EBADF, std::system_category(), "channel endpoint is write-only");
  }
  if (!s.bell) {
    s.bell = std::make_unique<doorbell>();
    local_eventfd_bells.fetch_add(1, std::memory_order_acq_rel);
    if (readable_now(s)) s.bell->ring();  // exact from the first look on
  }
  if (s.watcher == nullptr) {
    s.watcher_stop.store(false, std::memory_order_relaxed);
    s.watcher = new std::thread(watcher_main, &s);
  }
  return s.bell->fd();
}

void channel::set_doorbell(doorbell bell) {
  const std::shared_ptr<state> held = state_.load(std::memory_order_acquire);
  if (!held || held->closed.load()) throw std::system_error(errc::handle_closed);
  if (!bell.is_socket()) throw std::system_error(EINVAL, std::system_category(), "not a socket doorbell");
  state& s = *held;
  s.stop_watcher();
  const bool reads = (static_cast<std::uint8_t>(s.role) & role_bits(endpoint_role::reader)) != 0;
  bell.set_reads_markers(reads);
  std::lock_guard lock(s.bell_mutex);
  if (s.bell && !s.bell->is_socket()) local_eventfd_bells.fetch_sub(1, std::memory_order_acq_rel);
  s.bell = std::make_unique<doorbell>(std::move(bell));
}

void channel::ring_through(int fd) {
  const std::shared_ptr<state> held = state_.load(std::memory_order_acquire);
  if (!held || held->closed.load()) throw std::system_error(errc::handle_closed);
  const std::uint64_t inode = doorbell::socket_inode(fd);
  if (inode == 0) throw std::system_error(ENOTSOCK, std::system_category(), "not a socket");
  state& s = *held;
  {
    detail::scoped_lock lock(s.ctl->bell_lock);
    s.ctl->bell_socket.store(inode, std::memory_order_release);
    s.ctl->bell_rung.store(0, std::memory_order_relaxed);
  }
  if (readable_now(s)) s.ring_bells();
}

long channel::receive_socket(std::span<std::byte> out, std::size_t max_fds, std::vector<int>& fds,
                             const deadline& until, wait_result& result) {
  const std::shared_ptr<state> held = state_.load(std::memory_order_acquire);
  if (!held || held->closed.load()) throw std::system_error(errc::handle_closed);
  doorbell* bell = nullptr;
  {
    std::lock_guard lock(held->bell_mutex);
    if (held->bell && held->bell->is_socket()) bell = held->bell.get();
  }
  if (bell == nullptr) throw std::system_error(EBADF, std::system_category(), "this channel endpoint has no socket");
  const detail::exit_watch exiting;
  const long got = bell->receive(out, max_fds, fds, until, result, &held->cancelled);
  exiting.before_return(held->cancelled);
  return got;
}

doorbell* channel::socket_doorbell() noexcept {
  const std::shared_ptr<state> held = state_.load(std::memory_order_acquire);
  if (!held) return nullptr;
  std::lock_guard lock(held->bell_mutex);
  return held->bell && held->bell->is_socket() ? held->bell.get() : nullptr;
}

void channel::state::stop_watcher() noexcept {
  std::thread* t = nullptr;
  {
    std::lock_guard lock(bell_mutex);
    t = watcher;
    watcher = nullptr;
  }
  if (t != nullptr) {
    watcher_stop.store(true, std::memory_order_release);
    ctl->watch_seq.fetch_add(1, std::memory_order_acq_rel);
    futex_wake_all(ctl->watch_seq);
    t->join();
    delete t;
  }
}

}  // namespace mphost::ipc
