#include "mphost/ipc/condition.hpp"

#include <cerrno>
#include <new>

#include "detail/spin.hpp"
#include "detail/state_probe.hpp"
#include "detail/sync_state.hpp"
#include "mphost/ipc/error.hpp"
#include "mphost/ipc/futex.hpp"
#include "mphost/ipc/robust_mutex.hpp"

namespace mphost::ipc {
namespace detail {

// One waiter's place. `word` is the slot's state, and the futex its owner
// sleeps on; `stamp` names the owner's process; `ticket` orders waiters
// (oldest first). Every change of `word` is a compare-and-swap, except by
// the slot's owner once it has been notified (only it may then free it).
struct condition_slot {
  futex_word word;
  std::uint32_t ticket;
  std::atomic<std::uint64_t> stamp;
};

struct condition_state {
  static constexpr std::uint32_t magic_value = 0x6d70636e;  // "mpcn"
  static constexpr std::uint32_t current_version = 1;
  std::uint32_t magic;
  std::uint32_t version;
  robust_mutex guard;                          // enlist and notify
  std::uint32_t next_ticket;                   // under guard
  std::uint32_t top;                           // under guard: slots ever used
  std::atomic<std::uint32_t> enlisted;         // waiters present, overflow ones too
  std::atomic<std::uint32_t> overflow_waiters;
  futex_word overflow_bell;
  condition_slot slots[condition::slot_count];
};

}  // namespace detail

namespace {

using detail::condition_slot;
using detail::condition_state;

// Slot states (low bits of the word); `asleep` is added to `waiting` by a
// waiter about to sleep, so that a notifier knows a futex wake is needed.
constexpr std::uint32_t slot_free = 0;
constexpr std::uint32_t slot_waiting = 1;
constexpr std::uint32_t slot_notified = 2;
constexpr std::uint32_t slot_asleep = 4;
constexpr std::uint32_t state_mask = 3;

constexpr std::size_t segment_size = 4096;
static_assert(sizeof(condition_state) <= segment_size);

detail::adaptive_spin condition_spin(2000, 50000);

// The guard is held for a few instructions; a signal cannot be answered
// there, and a dead holder is simply taken over (the slots stay consistent).
class guard_scope {
 public:
  explicit guard_scope(robust_mutex& m) noexcept : m_(m) {
    while (m_.lock() == wait_result::interrupted) {
    }
  }
  ~guard_scope() { m_.unlock(); }
  guard_scope(const guard_scope&) = delete;
  guard_scope& operator=(const guard_scope&) = delete;

 private:
  robust_mutex& m_;
};

std::uint32_t slot_state(const condition_slot& s) noexcept { return s.word.load(std::memory_order_acquire) & state_mask; }

// Turns a waiting slot into a notified one; false if it is not waiting any
// more (withdrawn or timed out meanwhile). `was_asleep` tells whether its
// owner had announced a sleep.
bool mark_notified(condition_slot& s, bool& was_asleep) noexcept {
  std::uint32_t v = s.word.load(std::memory_order_relaxed);
  while ((v & state_mask) == slot_waiting) {
    if (s.word.compare_exchange_weak(v, slot_notified, std::memory_order_acq_rel, std::memory_order_relaxed)) {
      was_asleep = (v & slot_asleep) != 0;
      return true;
    }
  }
  return false;
}

// A waiting slot back to free (timeout, withdrawal, dead owner); false if it
// was notified first.
bool mark_free(condition_slot& s) noexcept {
  std::uint32_t v = s.word.load(std::memory_order_relaxed);
  while ((v & state_mask) == slot_waiting) {
    if (s.word.compare_exchange_weak(v, slot_free, std::memory_order_acq_rel, std::memory_order_relaxed)) return true;
  }
  return false;
}

}  // namespace

condition::condition(segment seg) noexcept
    : segment_(std::move(seg)), state_(static_cast<condition_state*>(segment_.base())) {}

condition::condition(condition&& other) noexcept : segment_(std::move(other.segment_)), state_(other.state_) {
  other.state_ = nullptr;
}

condition& condition::operator=(condition&& other) noexcept {
  if (this != &other) {
    segment_ = std::move(other.segment_);
    state_ = other.state_;
    other.state_ = nullptr;
  }
  return *this;
}

condition::~condition() = default;

condition condition::create(const std::string& name) {
  segment seg = detail::make_sync_segment(name, segment_size, default_prefix);
  auto* s = new (seg.base()) condition_state{};
  s->version = condition_state::current_version;
  std::atomic_thread_fence(std::memory_order_release);
  s->magic = condition_state::magic_value;
  return condition(std::move(seg));
}

condition condition::open(const std::string& name) {
  segment seg = segment::open(name);
  const auto* s = static_cast<const condition_state*>(seg.base());
  std::atomic_thread_fence(std::memory_order_acquire);
  if (seg.size() < sizeof(condition_state) || s->magic != condition_state::magic_value ||
      s->version != condition_state::current_version) {
    throw_errno(EINVAL, "not a condition");
  }
  return condition(std::move(seg));
}

bool condition::unlink(const std::string& name) noexcept { return segment::remove(name); }

condition::waiter condition::enlist() noexcept {
  condition_state& st = *state_;
  waiter w;
  w.active = true;
  st.enlisted.fetch_add(1, std::memory_order_relaxed);
  guard_scope held(st.guard);
  for (int round = 0; round < 2; ++round) {
    for (std::uint32_t i = 0; i < slot_count; ++i) {
      condition_slot& s = st.slots[i];
      if (round == 1 && slot_state(s) == slot_waiting && !detail::party_alive(s.stamp.load(std::memory_order_relaxed))) {
        // Full: a slot whose owner died waiting is taken back first.
        if (mark_free(s)) st.enlisted.fetch_sub(1, std::memory_order_relaxed);
      }
      if (s.word.load(std::memory_order_acquire) != slot_free) continue;
      s.stamp.store(detail::self_stamp(), std::memory_order_relaxed);
      s.ticket = st.next_ticket++;
      s.word.store(slot_waiting, std::memory_order_release);
      if (i + 1 > st.top) st.top = i + 1;
      w.slot = i;
      return w;
    }
  }
  // Every slot is taken by a live waiter: wait on the overflow bell.
  w.slot = slot_count;
  w.mark = detail::bell_mark(st.overflow_bell);
  st.overflow_waiters.fetch_add(1, std::memory_order_relaxed);
  return w;
}

void condition::leave(waiter& w) noexcept {
  condition_state& st = *state_;
  if (w.slot < slot_count) {
    st.slots[w.slot].word.store(slot_free, std::memory_order_release);
  } else {
    st.overflow_waiters.fetch_sub(1, std::memory_order_relaxed);
  }
  st.enlisted.fetch_sub(1, std::memory_order_relaxed);
  w.active = false;
}

wait_result condition::wait(waiter& w, const deadline& until) noexcept {
  if (!w.active) return wait_result::ok;
  condition_state& st = *state_;
  if (w.slot == slot_count) {
    for (;;) {
      const wait_result r = detail::sleep(st.overflow_bell, w.mark, until);
      if (detail::bell_mark(st.overflow_bell) != w.mark) {
        leave(w);
        return wait_result::ok;
      }
      if (r == wait_result::interrupted) return r;
      if (r == wait_result::timed_out && until.expired()) {
        leave(w);
        return r;
      }
    }
  }
  condition_slot& s = st.slots[w.slot];
  const auto notified = [&]() noexcept { return slot_state(s) == slot_notified; };
  const std::int64_t start_ns = detail::monotonic_ns();
  if (notified() || (!until.expired() && condition_spin.spin(notified, start_ns))) {
    condition_spin.record(start_ns);
    leave(w);
    return wait_result::ok;
  }
  for (;;) {
    std::uint32_t v = s.word.load(std::memory_order_acquire);
    if ((v & state_mask) == slot_notified) {
      condition_spin.record(start_ns);
      leave(w);
      return wait_result::ok;
    }
    wait_result r = wait_result::timed_out;
    if (!until.expired()) {
      if ((v & slot_asleep) == 0 &&
          !s.word.compare_exchange_weak(v, v | slot_asleep, std::memory_order_acq_rel, std::memory_order_acquire)) {
        continue;
      }
      r = futex_wait(s.word, v | slot_asleep, until);
    }
    if (r == wait_result::interrupted) {
      if (notified()) {
        leave(w);
        return wait_result::ok;
      }
      return r;
    }
    if (r == wait_result::timed_out && until.expired()) {
      if (mark_free(s)) {
        st.enlisted.fetch_sub(1, std::memory_order_relaxed);
        w.active = false;
        return wait_result::timed_out;
      }
      leave(w);  // notified at the last moment: that notification is ours
      return wait_result::ok;
    }
  }
}

void condition::withdraw(waiter& w) noexcept {
  if (!w.active) return;
  condition_state& st = *state_;
  bool pass_on;
  if (w.slot == slot_count) {
    pass_on = detail::bell_mark(st.overflow_bell) != w.mark;
    leave(w);
  } else if (mark_free(st.slots[w.slot])) {
    pass_on = false;
    st.enlisted.fetch_sub(1, std::memory_order_relaxed);
    w.active = false;
  } else {
    pass_on = true;
    leave(w);
  }
  if (pass_on) (void)notify(1);
}

std::uint32_t condition::notify(std::uint32_t n) noexcept {
  condition_state& st = *state_;
  if (n == 0 || st.enlisted.load(std::memory_order_acquire) == 0) return 0;
  guard_scope held(st.guard);
  const std::uint32_t top = st.top;
  const pid_t self = current_pid();
  // Notifications given earlier to waiters that died before taking them
  // are handed on now, on top of the n asked for.
  std::uint32_t extra = 0;
  for (std::uint32_t i = 0; i < top; ++i) {
    condition_slot& s = st.slots[i];
    if (slot_state(s) != slot_notified) continue;
    const std::uint64_t stamp = s.stamp.load(std::memory_order_relaxed);
    if (detail::stamp_pid(stamp) == self || detail::party_alive(stamp)) continue;
    std::uint32_t v = slot_notified;
    if (s.word.compare_exchange_strong(v, slot_free, std::memory_order_acq_rel)) {
      st.enlisted.fetch_sub(1, std::memory_order_relaxed);
      ++extra;
    }
  }
  const std::uint32_t want = n > 0xffffffffu - extra ? 0xffffffffu : n + extra;
  std::uint32_t woken = 0;
  while (woken < want) {
    // The oldest waiting slot: the largest distance behind next_ticket.
    condition_slot* oldest = nullptr;
    std::uint32_t oldest_age = 0;
    for (std::uint32_t i = 0; i < top; ++i) {
      condition_slot& s = st.slots[i];
      if (slot_state(s) != slot_waiting) continue;
      const std::uint32_t age = st.next_ticket - s.ticket;
      if (oldest == nullptr || age > oldest_age) {
        oldest = &s;
        oldest_age = age;
      }
    }
    if (oldest == nullptr) break;
    bool was_asleep = false;
    if (!mark_notified(*oldest, was_asleep)) continue;  // it left meanwhile
    // A sleeper the wake reached is alive. One that had announced a sleep
    // but was not reached may be dead: ask. One that never announced a
    // sleep is on its way (a death there is caught by a later notify).
    bool alive = true;
    if (was_asleep && futex_wake(oldest->word, 1) == 0) alive = detail::party_alive(oldest->stamp.load(std::memory_order_relaxed));
    if (alive) {
      ++woken;
    } else {
      oldest->word.store(slot_free, std::memory_order_release);
      st.enlisted.fetch_sub(1, std::memory_order_relaxed);
    }
  }
  if (woken < want) {
    const std::uint32_t overflow = st.overflow_waiters.load(std::memory_order_acquire);
    if (overflow > 0) {
      detail::ring(st.overflow_bell);
      woken += overflow;
    }
  }
  return woken < n ? woken : n;
}

std::uint32_t condition::waiting() const noexcept { return state_->enlisted.load(std::memory_order_relaxed); }

// ---- for observers (detail/state_probe.hpp) ----

bool detail::describe_condition(const std::byte* bytes, std::size_t size, sync_view& out) noexcept {
  static_assert(sizeof(condition_state) <= probe_bytes);
  if (size < sizeof(condition_state)) return false;
  const auto* s = reinterpret_cast<const condition_state*>(bytes);
  if (s->magic != condition_state::magic_value || s->version != condition_state::current_version) return false;
  out.kind = "Condition";
  out.waiters = s->enlisted.load(std::memory_order_relaxed);
  out.may_have_waiters = *out.waiters != 0;
  return true;
}

}  // namespace mphost::ipc
