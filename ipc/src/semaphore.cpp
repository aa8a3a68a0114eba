#include "mphost/ipc/semaphore.hpp"

#include <cerrno>
#include <new>

#include "detail/owner_word.hpp"
#include "detail/spin.hpp"
#include "detail/state_probe.hpp"
#include "detail/undo_table.hpp"
#include "mphost/ipc/error.hpp"
#include "mphost/ipc/futex.hpp"

namespace mphost::ipc {
namespace detail {

// The shared layout, at the start of the semaphore's own segment. The
// recursive owner's record sits on a cache line of its own: the owner
// updates it on every nested acquire and release, and processes waiting for
// the lock poll the word's line, which those updates then leave alone.
struct semlock_state {
  static constexpr std::uint32_t magic_value = 0x6d70736c;  // "mpsl"
  static constexpr std::uint32_t current_version = 3;

  std::uint32_t magic;
  std::uint32_t version;
  std::int32_t kind;
  std::uint32_t maxvalue;
  std::uint32_t owner_mode;  // 1: a lock word with an owner; 0: a counter; 2: a counter with undo

  // Counter mode.
  futex_word value;
  std::atomic<std::uint32_t> waiters;

  // Owner mode: detail/owner_word.hpp.
  futex_word word;
  std::atomic<std::uint64_t> stamp;

  // Recursive mutex: the owning thread and its depth, written by the owner
  // only (plain stores; others compare them after reading the word).
  alignas(64) std::atomic<std::uint32_t> owner_thread;
  std::atomic<std::uint32_t> recursion;
};

}  // namespace detail

namespace {

constexpr std::size_t segment_size = 4096;
static_assert(sizeof(detail::semlock_state) <= segment_size);
// With undo, the adjustment table follows the state in a larger segment.
constexpr std::size_t undo_offset = detail::undo_table_offset;
static_assert(sizeof(detail::semlock_state) <= undo_offset);
constexpr std::uint32_t undo_owner_mode = 2;

detail::undo_table& table_of(detail::semlock_state& s) noexcept {
  return *reinterpret_cast<detail::undo_table*>(reinterpret_cast<char*>(&s) + undo_offset);
}

detail::undo_counter undo_of(detail::semlock_state& s) noexcept {
  return detail::undo_counter(s.value, s.waiters, s.maxvalue, table_of(s));
}

detail::adaptive_spin semaphore_spin(500, 20000);

bool try_decrement(futex_word& value) noexcept {
  std::uint32_t v = value.load(std::memory_order_relaxed);
  while (v > 0) {
    if (value.compare_exchange_weak(v, v - 1, std::memory_order_acquire, std::memory_order_relaxed)) return true;
  }
  return false;
}

wait_result acquire_counter(detail::semlock_state& s, const deadline& until) noexcept {
  if (try_decrement(s.value)) return wait_result::ok;
  const std::int64_t start_ns = detail::monotonic_ns();
  if (!until.expired() && semaphore_spin.spin([&]() noexcept { return try_decrement(s.value); }, start_ns)) {
    semaphore_spin.record(start_ns);
    return wait_result::ok;
  }
  for (;;) {
    // Announce ourselves, then look again: a release that happened before
    // the announcement is seen by the second look, one after it sees us.
    s.waiters.fetch_add(1, std::memory_order_seq_cst);
    if (try_decrement(s.value)) {
      s.waiters.fetch_sub(1, std::memory_order_relaxed);
      semaphore_spin.record(start_ns);
      return wait_result::ok;
    }
    const wait_result r = futex_wait(s.value, 0, until);
    s.waiters.fetch_sub(1, std::memory_order_relaxed);
    if (try_decrement(s.value)) {
      semaphore_spin.record(start_ns);
      return wait_result::ok;
    }
    if (r == wait_result::interrupted || r == wait_result::timed_out) return r;
  }
}

}  // namespace

semaphore::semaphore(segment seg)
    : segment_(std::move(seg)),
      state_(static_cast<detail::semlock_state*>(segment_.base())),
      mode_(state_->owner_mode == 0                                             ? mode::counter
            : state_->owner_mode == undo_owner_mode                             ? mode::undo
            : state_->kind == static_cast<int>(semlock_kind::recursive_mutex) ? mode::recursive
                                                                               : mode::lock) {}

semaphore::semaphore(semaphore&& other) noexcept
    : segment_(std::move(other.segment_)),
      state_(other.state_),
      mode_(other.mode_),
      local_count_(other.local_count_.load(std::memory_order_relaxed)),
      last_thread_(other.last_thread_.load(std::memory_order_relaxed)),
      undo_hint_(other.undo_hint_) {
  other.state_ = nullptr;
}

semaphore& semaphore::operator=(semaphore&& other) noexcept {
  if (this != &other) {
    segment_ = std::move(other.segment_);
    state_ = other.state_;
    mode_ = other.mode_;
    other.state_ = nullptr;
    local_count_.store(other.local_count_.load(std::memory_order_relaxed), std::memory_order_relaxed);
    last_thread_.store(other.last_thread_.load(std::memory_order_relaxed), std::memory_order_relaxed);
    undo_hint_ = other.undo_hint_;
  }
  return *this;
}

semaphore::~semaphore() = default;

semaphore semaphore::create(semlock_kind kind, std::uint32_t value, std::uint32_t maxvalue, const std::string& name,
                            const semaphore_options& options) {
  if (kind != semlock_kind::recursive_mutex && kind != semlock_kind::semaphore) throw_errno(EINVAL, "unknown semaphore kind");
  if (maxvalue == 0 || maxvalue > value_max || value > maxvalue) throw_errno(EINVAL, "invalid semaphore value");
  // A recursive mutex has maxvalue 1; created with value 0 it starts held
  // by no identifiable owner (CPython accepts that, and joblib probes with it).
  if (kind == semlock_kind::recursive_mutex && maxvalue != 1) {
    throw_errno(EINVAL, "a recursive mutex has maxvalue 1");
  }
  if (kind == semlock_kind::recursive_mutex && options.undo) throw_errno(EINVAL, "a recursive mutex has no undo");
  const std::size_t size = options.undo ? detail::undo_segment_size : segment_size;
  segment seg = name.empty() ? segment::create(size, default_prefix) : segment::create_named(name, size);
  auto* s = new (seg.base()) detail::semlock_state{};
  s->kind = static_cast<std::int32_t>(kind);
  s->maxvalue = maxvalue;
  const bool owned = kind == semlock_kind::recursive_mutex || (maxvalue == 1 && options.track_holder && !options.undo);
  s->owner_mode = owned ? 1 : options.undo ? undo_owner_mode : 0;
  if (options.undo) {
    detail::undo_counter::init(table_of(*s), size - undo_offset);
    s->value.store(value, std::memory_order_relaxed);
  } else if (s->owner_mode) {
    // A lock created held (Semaphore(0) bounded at 1) has no owner to lose.
    s->word.store(value == 1 ? 0 : detail::unknown_owner, std::memory_order_relaxed);
  } else {
    s->value.store(value, std::memory_order_relaxed);
  }
  s->version = detail::semlock_state::current_version;
  std::atomic_thread_fence(std::memory_order_release);
  s->magic = detail::semlock_state::magic_value;
  return semaphore(std::move(seg));
}

semaphore semaphore::open(const std::string& name) {
  segment seg = segment::open(name);
  if (seg.size() < sizeof(detail::semlock_state)) throw_errno(EINVAL, "not a semaphore");
  const auto* s = static_cast<const detail::semlock_state*>(seg.base());
  std::atomic_thread_fence(std::memory_order_acquire);
  if (s->magic != detail::semlock_state::magic_value || s->version != detail::semlock_state::current_version ||
      (s->kind != 0 && s->kind != 1) || s->maxvalue == 0 || s->maxvalue > value_max || s->owner_mode > undo_owner_mode) {
    throw_errno(EINVAL, "not a semaphore");
  }
  if (s->owner_mode == undo_owner_mode &&
      (seg.size() < detail::undo_segment_size ||
       table_of(*const_cast<detail::semlock_state*>(s)).capacity > detail::undo_capacity(seg.size() - undo_offset))) {
    throw_errno(EINVAL, "not a semaphore");
  }
  return semaphore(std::move(seg));
}

void semaphore::unlink(const std::string& name) {
  if (!segment::remove(name)) throw_errno(ENOENT, ("sem_unlink '" + name + "'").c_str());
}

semlock_kind semaphore::kind() const noexcept { return static_cast<semlock_kind>(state_->kind); }
std::uint32_t semaphore::maxvalue() const noexcept { return state_->maxvalue; }
const void* semaphore::handle() const noexcept { return state_; }

bool semaphore::try_acquire() noexcept {
  detail::semlock_state& s = *state_;
  if (mode_ == mode::lock) [[likely]] {
    const detail::self_identity& me = detail::current_identity();
    if (!detail::owner_take_free(s.word, s.stamp, me)) return false;
    // Holding the lock serializes this bookkeeping with every other acquire
    // and release of it (release updates it before freeing the word), so a
    // plain load and store suffice.
    local_count_.store(local_count_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    last_thread_.store(me.tid, std::memory_order_relaxed);
    return true;
  }
  if (mode_ == mode::undo) {
    if (undo_of(s).try_take(undo_hint_) != wait_result::ok) return false;
    local_count_.fetch_add(1, std::memory_order_relaxed);
    last_thread_.store(detail::current_identity().tid, std::memory_order_relaxed);
    return true;
  }
  if (mode_ == mode::counter) {
    if (!try_decrement(s.value)) return false;
    // Units are held concurrently by several threads: count atomically.
    local_count_.fetch_add(1, std::memory_order_relaxed);
    last_thread_.store(detail::current_identity().tid, std::memory_order_relaxed);
    return true;
  }
  const detail::self_identity& me = detail::current_identity();
  // Nested acquire by the owner: only the owner writes these fields.
  if (s.owner_thread.load(std::memory_order_relaxed) == me.tid &&
      (s.word.load(std::memory_order_relaxed) & detail::owner_mask) == me.word) {
    const std::uint32_t depth = s.recursion.load(std::memory_order_relaxed);
    if (depth > 0) {
      s.recursion.store(depth + 1, std::memory_order_relaxed);
      return true;
    }
  }
  if (!detail::owner_take_free(s.word, s.stamp, me)) return false;
  note_owner_acquired(me);
  return true;
}

void semaphore::note_owner_acquired(const detail::self_identity& me) noexcept {
  detail::semlock_state& s = *state_;
  if (mode_ == mode::recursive) {
    s.owner_thread.store(me.tid, std::memory_order_relaxed);
    s.recursion.store(1, std::memory_order_relaxed);
  } else {
    local_count_.store(local_count_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    last_thread_.store(me.tid, std::memory_order_relaxed);
  }
}

wait_result semaphore::acquire(const deadline& until) noexcept {
  if (try_acquire()) return wait_result::ok;
  detail::semlock_state& s = *state_;
  if (mode_ == mode::counter || mode_ == mode::undo) {
    const wait_result r = mode_ == mode::undo ? undo_of(s).take(undo_hint_, until) : acquire_counter(s, until);
    if (acquired(r)) {
      local_count_.fetch_add(1, std::memory_order_relaxed);
      last_thread_.store(detail::current_identity().tid, std::memory_order_relaxed);
    }
    return r;
  }
  const wait_result r = until.expired() ? detail::owner_try_lock(s.word, s.stamp) : detail::owner_lock(s.word, s.stamp, until);
  if (acquired(r)) note_owner_acquired(detail::current_identity());
  return r;
}

std::error_code semaphore::try_release() noexcept {
  const errc e = release_status();
  if (e == errc{}) return {};
  return e;
}

errc semaphore::release_status() noexcept {
  detail::semlock_state& s = *state_;
  switch (mode_) {
    case mode::recursive: {
      if (!is_mine()) return errc::not_owner;
      const std::uint32_t depth = s.recursion.load(std::memory_order_relaxed);
      s.recursion.store(depth - 1, std::memory_order_relaxed);
      if (depth > 1) return errc{};
      s.owner_thread.store(0, std::memory_order_relaxed);
      detail::owner_unlock(s.word, s.stamp);
      return errc{};
    }
    case mode::lock: {
      // Any thread of any process may release a Lock; releasing a free one
      // is an error.
      if ((s.word.load(std::memory_order_relaxed) & detail::owner_mask) == 0) return errc::released_too_many_times;
      const std::uint32_t c = local_count_.load(std::memory_order_relaxed);
      if (c > 0) local_count_.store(c - 1, std::memory_order_relaxed);
      // Freed meanwhile by a concurrent release: this one was one too many.
      if (!detail::owner_unlock(s.word, s.stamp)) return errc::released_too_many_times;
      return errc{};
    }
    case mode::undo: {
      const errc e = undo_of(s).give(undo_hint_);
      if (e != errc{}) return e;
      std::uint32_t c = local_count_.load(std::memory_order_relaxed);
      while (c > 0 && !local_count_.compare_exchange_weak(c, c - 1, std::memory_order_relaxed)) {
      }
      return errc{};
    }
    case mode::counter: break;
  }
  std::uint32_t v = s.value.load(std::memory_order_relaxed);
  for (;;) {
    if (v >= s.maxvalue) return errc::released_too_many_times;
    if (s.value.compare_exchange_weak(v, v + 1, std::memory_order_seq_cst, std::memory_order_relaxed)) break;
  }
  if (s.waiters.load(std::memory_order_seq_cst) > 0) futex_wake(s.value, 1);
  std::uint32_t c = local_count_.load(std::memory_order_relaxed);
  while (c > 0 && !local_count_.compare_exchange_weak(c, c - 1, std::memory_order_relaxed)) {
  }
  return errc{};
}

void semaphore::release() {
  const std::error_code ec = try_release();
  if (ec) throw std::system_error(ec);
}

std::uint32_t semaphore::value() const noexcept {
  if (mode_ == mode::undo) {
    (void)undo_of(*state_).reap();
    return state_->value.load(std::memory_order_seq_cst);
  }
  const detail::semlock_state& s = *state_;
  if (s.owner_mode) return (s.word.load(std::memory_order_relaxed) & detail::owner_mask) == 0 ? 1 : 0;
  return s.value.load(std::memory_order_relaxed);
}

bool semaphore::is_mine() const noexcept {
  const detail::semlock_state& s = *state_;
  const detail::self_identity& me = detail::current_identity();
  if (mode_ == mode::recursive) {
    return s.owner_thread.load(std::memory_order_relaxed) == me.tid &&
           (s.word.load(std::memory_order_acquire) & detail::owner_mask) == me.word &&
           s.recursion.load(std::memory_order_relaxed) > 0;
  }
  return local_count_.load(std::memory_order_relaxed) > 0 && last_thread_.load(std::memory_order_relaxed) == me.tid;
}

std::uint32_t semaphore::count() const noexcept {
  if (mode_ == mode::recursive) return is_mine() ? state_->recursion.load(std::memory_order_relaxed) : 0;
  return local_count_.load(std::memory_order_relaxed);
}

void semaphore::reserve_undo() {
  if (mode_ == mode::undo && !undo_of(*state_).reserve(undo_hint_)) {
    throw_errno(ENOSPC, "the semaphore's undo table is full: every slot belongs to a live process");
  }
}

void semaphore::after_fork() noexcept { local_count_.store(0, std::memory_order_relaxed); }

// ---- for observers (detail/state_probe.hpp) ----

bool detail::describe_semlock(const std::byte* bytes, std::size_t size, sync_view& out) noexcept {
  if (size < sizeof(detail::semlock_state)) return false;
  const auto* s = reinterpret_cast<const detail::semlock_state*>(bytes);
  if (s->magic != detail::semlock_state::magic_value || s->version != detail::semlock_state::current_version ||
      (s->kind != 0 && s->kind != 1) || s->maxvalue == 0 || s->maxvalue > semaphore::value_max ||
      s->owner_mode > undo_owner_mode) {
    return false;
  }
  out.maxvalue = s->maxvalue;
  if (s->owner_mode == 1) {
    const std::uint32_t word = s->word.load(std::memory_order_relaxed);
    const std::uint32_t owner = word & detail::owner_mask;
    out.kind = s->kind == 0 ? "RLock" : "Lock";
    out.value = owner == 0 ? 1 : 0;
    if (owner != 0 && owner != detail::unknown_owner) out.holder_pid = static_cast<pid_t>(owner);
    out.may_have_waiters = (word & detail::waiters_bit) != 0;
    if (s->kind == 0 && owner != 0) out.recursion = s->recursion.load(std::memory_order_relaxed);
  } else {
    out.kind = s->maxvalue == semaphore::value_max ? "Semaphore" : "BoundedSemaphore";
    out.value = s->value.load(std::memory_order_relaxed);
    out.waiters = s->waiters.load(std::memory_order_relaxed);
    out.may_have_waiters = *out.waiters != 0;
  }
  return true;
}

}  // namespace mphost::ipc
