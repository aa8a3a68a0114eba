// The doorbells of channels (channel.hpp, Readiness): the socket doorbell
// protocol of Pipe ends (writers ring, the recv that empties the channel
// clears), this process's eventfd doorbells and their watcher threads, and
// the endpoint calls that hand out or set a doorbell.

#include <atomic>
#include <cerrno>
#include <mutex>
#include <thread>

#include "detail/channel_state.hpp"
#include "mphost/ipc/error.hpp"
#include "mphost/ipc/frame.hpp"
#include "mphost/ipc/futex.hpp"

namespace mphost::ipc {

namespace {

using namespace std::chrono_literals;
using detail::control;

std::uint8_t role_bits(endpoint_role role) noexcept { return static_cast<std::uint8_t>(role); }

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
  // Ring 0 is always mapped; a later one is kept from the previous look.
  std::shared_ptr<detail::ring_map> ring =
      s.ctl->head_ring.load(std::memory_order_relaxed) == 0 ? s.ring0 : s.looked_ring.load(std::memory_order_acquire);
  try {
    const detail::ring_map* before = ring.get();
    const bool ready = looks_readable(s, ring, false);
    if (ring.get() != before && ring != s.ring0) s.looked_ring.store(ring, std::memory_order_release);
    return ready;
  } catch (...) {
    return true;  // let recv surface the failure
  }
}

// Rings (or, with ring == false, settles) this process's eventfd doorbells
// of s's channel, each under its bell_mutex, so that a watcher thread's
// look-then-act cannot interleave with ours.
void touch_local_bells(channel::state& s, bool ring) noexcept {
  detail::endpoint_registry& r = detail::endpoints_registry();
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

// A writer killed while it rang (between the flag and the marker) leaves the
// flag set with no marker, and bell_lock held by a dead process: every later
// send would see the flag and not ring, and a reader blocked on the socket
// would sleep past messages that are there. A send that sees the flag while
// the lock is held takes the lock over if its holder is dead and rings (an
// extra marker only makes the socket readable once more; the recv that
// empties the channel clears it). Cheap: only a load of the lock word when
// the flag is already set.
void ring_if_holder_died(control& c, std::uint64_t socket) noexcept {
  const wait_result r = c.bell_lock.try_lock();
  if (r == wait_result::owner_died) ring_socket_locked(c, socket);
  if (acquired(r)) c.bell_lock.unlock();
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
  if (socket != 0 && c.bell_armed.load(std::memory_order_seq_cst) != 0) {
    if (c.bell_rung.load(std::memory_order_seq_cst) == 0) {
      detail::scoped_lock lock(c.bell_lock);
      if (c.bell_rung.load(std::memory_order_relaxed) == 0 || lock.took_over()) ring_socket_locked(c, socket);
    } else if (c.bell_lock.owner() != 0) {
      ring_if_holder_died(c, socket);
    }
  }
  if (detail::local_eventfd_bells.load(std::memory_order_acquire) != 0) touch_local_bells(*this, true);
}

void channel::state::settle_bells() noexcept {
  control& c = *ctl;
  if (c.bell_armed.load(std::memory_order_relaxed) != 0 && bell && bell->ring_fd() >= 0) {
    std::lock_guard lock(bell_mutex);
    drop_ring_end(*this);
  }
  if (c.bell_rung.load(std::memory_order_seq_cst) != 0 && bell && bell->is_socket() && !readable_now(*this)) {
    detail::scoped_lock lock(c.bell_lock);
    if (c.bell_rung.load(std::memory_order_relaxed) != 0 || lock.took_over()) {
      c.bell_rung.store(0, std::memory_order_seq_cst);
      std::atomic_thread_fence(std::memory_order_seq_cst);
      if (!readable_now(*this)) {
        // Every marker was written under bell_lock, so all are in the socket.
        bell->clear();
      } else if (lock.took_over()) {
        // Its dead holder may have set the flag without writing the marker
        // (see ring_if_holder_died): write one.
        ring_socket_locked(c, c.bell_socket.load(std::memory_order_acquire));
      } else {
        c.bell_rung.store(1, std::memory_order_relaxed);  // its marker is still there
      }
    }
  }
  if (detail::local_eventfd_bells.load(std::memory_order_acquire) != 0) touch_local_bells(*this, false);
}

bool channel::ready_now() const noexcept {
  const std::shared_ptr<state> held = state_.load(std::memory_order_acquire);
  if (!held || held->closed.load(std::memory_order_relaxed)) return false;
  return readable_now(*held);
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
      if ((c.bell_rung.load(std::memory_order_relaxed) == 0 || arm.took_over()) && readable_now(s)) {
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
    detail::local_eventfd_bells.fetch_add(1, std::memory_order_acq_rel);
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
  if (s.bell && !s.bell->is_socket()) detail::local_eventfd_bells.fetch_sub(1, std::memory_order_acq_rel);
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
