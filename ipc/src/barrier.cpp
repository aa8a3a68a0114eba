#include "mphost/ipc/barrier.hpp"

#include <cerrno>
#include <chrono>
#include <new>

#include "detail/spin.hpp"
#include "detail/state_probe.hpp"
#include "detail/sync_state.hpp"
#include "mphost/ipc/error.hpp"
#include "mphost/ipc/robust_mutex.hpp"

namespace mphost::ipc {
namespace detail {

// The header; `parties` party stamps follow it (the slot of index i holds
// the process of the party that arrived i-th in the current cycle, until it
// leaves). phase and count change only under the guard; they are atomics
// so that the snapshots (n_waiting, broken) may read them without it.
struct barrier_state {
  static constexpr std::uint32_t magic_value = 0x6d706272;  // "mpbr"
  static constexpr std::uint32_t current_version = 1;
  std::uint32_t magic;
  std::uint32_t version;
  robust_mutex guard;
  std::uint32_t parties;
  std::atomic<std::int32_t> phase;
  std::atomic<std::uint32_t> count;
  futex_word bell;  // rung on every change of phase

  std::atomic<std::uint64_t>* party_slots() noexcept { return reinterpret_cast<std::atomic<std::uint64_t>*>(this + 1); }
};

}  // namespace detail

namespace {

using detail::barrier_state;

static_assert(sizeof(barrier_state) % alignof(std::atomic<std::uint64_t>) == 0);

// How long a waiter sleeps before it looks at the other parties' processes.
constexpr auto liveness_interval = std::chrono::milliseconds(100);

detail::adaptive_spin barrier_spin(2000, 50000);

std::size_t segment_size_for(std::uint32_t parties) {
  const std::size_t bytes = sizeof(barrier_state) + std::size_t{parties} * sizeof(std::uint64_t);
  return (bytes + 4095) / 4096 * 4096;
}

void lock(barrier_state& st) noexcept {
  while (st.guard.lock() == wait_result::interrupted) {
  }
}

int phase_of(const barrier_state& st) noexcept { return st.phase.load(std::memory_order_relaxed); }

// Under the guard, as every helper below.
void set_phase(barrier_state& st, int phase) noexcept {
  st.phase.store(phase, std::memory_order_relaxed);
  detail::ring(st.bell);
}

void settle_if_empty(barrier_state& st) noexcept {
  const int phase = phase_of(st);
  if (st.count.load(std::memory_order_relaxed) == 0 && (phase == barrier::draining || phase == barrier::resetting)) {
    set_phase(st, barrier::filling);
  }
}

void take_leave(barrier_state& st, std::uint32_t index) noexcept {
  if (index >= st.parties) return;
  std::atomic<std::uint64_t>& slot = st.party_slots()[index];
  if (slot.load(std::memory_order_relaxed) == 0) return;  // reaped already
  slot.store(0, std::memory_order_relaxed);
  st.count.fetch_sub(1, std::memory_order_relaxed);
  settle_if_empty(st);
}

// Parties whose process is gone are taken out; one that was still in a
// filling cycle breaks it.
void reap_dead(barrier_state& st) noexcept {
  std::atomic<std::uint64_t>* slots = st.party_slots();
  for (std::uint32_t i = 0; i < st.parties; ++i) {
    const std::uint64_t stamp = slots[i].load(std::memory_order_relaxed);
    if (stamp == 0 || detail::party_alive(stamp)) continue;
    slots[i].store(0, std::memory_order_relaxed);
    st.count.fetch_sub(1, std::memory_order_relaxed);
    if (phase_of(st) == barrier::filling) set_phase(st, barrier::broken);
  }
  settle_if_empty(st);
}

// Without the guard: until the bell moves on from `mark`, for at most one
// liveness interval. ok: it moved (or a spurious return); timed_out: the
// interval or `until` passed; interrupted.
wait_result pause(barrier_state& st, std::uint32_t mark, const deadline& until) noexcept {
  const auto moved = [&]() noexcept { return detail::bell_mark(st.bell) != mark; };
  const std::int64_t start_ns = detail::monotonic_ns();
  if (!until.expired() && barrier_spin.spin(moved, start_ns)) {
    barrier_spin.record(start_ns);
    return wait_result::ok;
  }
  const wait_result r = detail::sleep(st.bell, mark, deadline::earliest(until, deadline::after(liveness_interval)));
  if (moved()) {
    barrier_spin.record(start_ns);
    return wait_result::ok;
  }
  return r;
}

}  // namespace

barrier::barrier(segment seg) noexcept : segment_(std::move(seg)), state_(static_cast<barrier_state*>(segment_.base())) {}

barrier::barrier(barrier&& other) noexcept : segment_(std::move(other.segment_)), state_(other.state_) {
  other.state_ = nullptr;
}

barrier& barrier::operator=(barrier&& other) noexcept {
  if (this != &other) {
    segment_ = std::move(other.segment_);
    state_ = other.state_;
    other.state_ = nullptr;
  }
  return *this;
}

barrier::~barrier() = default;

barrier barrier::create(std::uint32_t parties, const std::string& name) {
  if (parties == 0 || parties > max_parties) throw_errno(EINVAL, "a barrier needs 1 to 2**20 parties");
  segment seg = detail::make_sync_segment(name, segment_size_for(parties), default_prefix);
  auto* s = new (seg.base()) barrier_state{};
  s->parties = parties;
  for (std::uint32_t i = 0; i < parties; ++i) new (&s->party_slots()[i]) std::atomic<std::uint64_t>(0);
  s->version = barrier_state::current_version;
  std::atomic_thread_fence(std::memory_order_release);
  s->magic = barrier_state::magic_value;
  return barrier(std::move(seg));
}

barrier barrier::open(const std::string& name) {
  segment seg = segment::open(name);
  const auto* s = static_cast<const barrier_state*>(seg.base());
  std::atomic_thread_fence(std::memory_order_acquire);
  if (seg.size() < sizeof(barrier_state) || s->magic != barrier_state::magic_value ||
      s->version != barrier_state::current_version || s->parties == 0 || s->parties > max_parties ||
      seg.size() < segment_size_for(s->parties)) {
    throw_errno(EINVAL, "not a barrier");
  }
  return barrier(std::move(seg));
}

bool barrier::unlink(const std::string& name) noexcept { return segment::remove(name); }

std::uint32_t barrier::parties() const noexcept { return state_->parties; }

barrier::entry barrier::enter() noexcept {
  barrier_state& st = *state_;
  lock(st);
  for (;;) {
    const int phase = phase_of(st);
    if (phase == filling) {
      const std::uint32_t index = st.count.load(std::memory_order_relaxed);
      st.party_slots()[index].store(detail::self_stamp(), std::memory_order_relaxed);
      st.count.store(index + 1, std::memory_order_relaxed);
      st.guard.unlock();
      return {barrier_result::passed, index};
    }
    if (phase == broken) {
      st.guard.unlock();
      return {barrier_result::broken, 0};
    }
    // Draining or resetting: wait until the previous cycle has left.
    const std::uint32_t mark = detail::bell_mark(st.bell);
    st.guard.unlock();
    const wait_result r = pause(st, mark, deadline::infinite());
    if (r == wait_result::interrupted) return {barrier_result::interrupted, 0};
    lock(st);
    if (r == wait_result::timed_out) reap_dead(st);
  }
}

void barrier::release(std::uint32_t index) noexcept {
  barrier_state& st = *state_;
  lock(st);
  if (phase_of(st) == filling) set_phase(st, draining);
  take_leave(st, index);
  st.guard.unlock();
}

void barrier::abandon(std::uint32_t index) noexcept {
  barrier_state& st = *state_;
  lock(st);
  set_phase(st, broken);
  take_leave(st, index);
  st.guard.unlock();
}

void barrier::leave(std::uint32_t index) noexcept {
  barrier_state& st = *state_;
  lock(st);
  take_leave(st, index);
  st.guard.unlock();
}

barrier_result barrier::await_release(std::uint32_t, const deadline& until) noexcept {
  barrier_state& st = *state_;
  lock(st);
  for (;;) {
    const int phase = phase_of(st);
    if (phase == draining) {
      st.guard.unlock();
      return barrier_result::passed;
    }
    if (phase != filling) {
      st.guard.unlock();
      return barrier_result::broken;
    }
    if (until.expired()) {
      set_phase(st, broken);
      st.guard.unlock();
      return barrier_result::timed_out;
    }
    const std::uint32_t mark = detail::bell_mark(st.bell);
    st.guard.unlock();
    const wait_result r = pause(st, mark, until);
    if (r == wait_result::interrupted) return barrier_result::interrupted;
    lock(st);
    if (r == wait_result::timed_out && !until.expired()) reap_dead(st);
  }
}

barrier::entry barrier::wait(const deadline& until) noexcept {
  const entry e = enter();
  if (e.result != barrier_result::passed) return e;
  if (e.index + 1 == parties()) {
    release(e.index);
    return e;
  }
  const barrier_result r = await_release(e.index, until);
  if (r == barrier_result::interrupted) {
    abandon(e.index);
  } else {
    leave(e.index);
  }
  return {r, e.index};
}

void barrier::abort() noexcept {
  barrier_state& st = *state_;
  lock(st);
  set_phase(st, broken);
  st.guard.unlock();
}

void barrier::reset() noexcept {
  barrier_state& st = *state_;
  lock(st);
  reap_dead(st);
  if (st.count.load(std::memory_order_relaxed) == 0) {
    set_phase(st, filling);
  } else if (phase_of(st) != draining) {
    set_phase(st, resetting);
  } else {
    detail::ring(st.bell);
  }
  st.guard.unlock();
}

barrier::state barrier::current_state() const noexcept { return static_cast<state>(phase_of(*state_)); }

std::uint32_t barrier::count() const noexcept { return state_->count.load(std::memory_order_relaxed); }

std::uint32_t barrier::n_waiting() const noexcept {
  return current_state() == filling ? count() : 0;
}

// ---- for observers (detail/state_probe.hpp) ----

bool detail::describe_barrier(const std::byte* bytes, std::size_t size, sync_view& out) noexcept {
  if (size < sizeof(barrier_state)) return false;
  const auto* s = reinterpret_cast<const barrier_state*>(bytes);
  if (s->magic != barrier_state::magic_value || s->version != barrier_state::current_version || s->parties == 0 ||
      s->parties > barrier::max_parties) {
    return false;
  }
  const int phase = s->phase.load(std::memory_order_relaxed);
  out.kind = "Barrier";
  out.parties = s->parties;
  out.broken = phase == barrier::broken;
  out.waiters = phase == barrier::filling ? s->count.load(std::memory_order_relaxed) : 0;
  out.may_have_waiters = *out.waiters != 0;
  return true;
}

}  // namespace mphost::ipc
