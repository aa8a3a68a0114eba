#include "mphost/ipc/event.hpp"

#include <cerrno>
#include <new>

#include "detail/spin.hpp"
#include "detail/state_probe.hpp"
#include "detail/sync_state.hpp"
#include "mphost/ipc/error.hpp"
#include "mphost/ipc/futex.hpp"

namespace mphost::ipc {
namespace detail {

// The whole event is one futex word:
//   bit 0      someone may be asleep (set by a sleeper, cleared by set())
//   bit 1      the flag
//   bits 2-31  the generation: how many times set() raised the flag
struct event_state {
  static constexpr std::uint32_t magic_value = 0x6d706576;  // "mpev"
  static constexpr std::uint32_t current_version = 1;
  std::uint32_t magic;
  std::uint32_t version;
  futex_word word;
};

}  // namespace detail

namespace {

constexpr std::uint32_t sleepers_bit = 1;
constexpr std::uint32_t flag_bit = 2;
constexpr std::uint32_t generation_unit = 4;
constexpr std::size_t segment_size = 4096;

detail::adaptive_spin event_spin(2000, 50000);

// Up now, or raised since `since` (a generation other than the one seen).
bool happened(std::uint32_t word, std::uint32_t since) noexcept {
  return (word & flag_bit) != 0 || (word & ~(sleepers_bit | flag_bit)) != since;
}

}  // namespace

event::event(segment seg) noexcept
    : segment_(std::move(seg)), state_(static_cast<detail::event_state*>(segment_.base())) {}

event::event(event&& other) noexcept : segment_(std::move(other.segment_)), state_(other.state_) {
  other.state_ = nullptr;
}

event& event::operator=(event&& other) noexcept {
  if (this != &other) {
    segment_ = std::move(other.segment_);
    state_ = other.state_;
    other.state_ = nullptr;
  }
  return *this;
}

event::~event() = default;

event event::create(const std::string& name) {
  segment seg = detail::make_sync_segment(name, segment_size, default_prefix);
  auto* s = new (seg.base()) detail::event_state{};
  s->version = detail::event_state::current_version;
  std::atomic_thread_fence(std::memory_order_release);
  s->magic = detail::event_state::magic_value;
  return event(std::move(seg));
}

event event::open(const std::string& name) {
  segment seg = segment::open(name);
  const auto* s = static_cast<const detail::event_state*>(seg.base());
  std::atomic_thread_fence(std::memory_order_acquire);
  if (seg.size() < sizeof(detail::event_state) || s->magic != detail::event_state::magic_value ||
      s->version != detail::event_state::current_version) {
    throw_errno(EINVAL, "not an event");
  }
  return event(std::move(seg));
}

bool event::unlink(const std::string& name) noexcept { return segment::remove(name); }

bool event::is_set() const noexcept { return (state_->word.load(std::memory_order_acquire) & flag_bit) != 0; }

void event::set() noexcept {
  futex_word& word = state_->word;
  std::uint32_t v = word.load(std::memory_order_relaxed);
  for (;;) {
    if (v & flag_bit) {
      // Already up: only order our writes before a waiter's return.
      std::atomic_thread_fence(std::memory_order_release);
      return;
    }
    const std::uint32_t raised = ((v & ~(sleepers_bit | flag_bit)) + generation_unit) | flag_bit;
    if (word.compare_exchange_weak(v, raised, std::memory_order_acq_rel, std::memory_order_relaxed)) break;
  }
  if (v & sleepers_bit) futex_wake_all(word);
}

void event::clear() noexcept { state_->word.fetch_and(~flag_bit, std::memory_order_acq_rel); }

std::uint32_t event::since() const noexcept {
  return state_->word.load(std::memory_order_acquire) & ~(sleepers_bit | flag_bit);
}

wait_result event::wait(std::uint32_t since, const deadline& until) noexcept {
  futex_word& word = state_->word;
  if (happened(word.load(std::memory_order_acquire), since)) return wait_result::ok;
  if (until.expired()) return wait_result::timed_out;
  const std::int64_t start_ns = detail::monotonic_ns();
  if (event_spin.spin([&]() noexcept { return happened(word.load(std::memory_order_acquire), since); }, start_ns)) {
    event_spin.record(start_ns);
    return wait_result::ok;
  }
  for (;;) {
    std::uint32_t v = word.load(std::memory_order_acquire);
    if (happened(v, since)) {
      event_spin.record(start_ns);
      return wait_result::ok;
    }
    if ((v & sleepers_bit) == 0 &&
        !word.compare_exchange_weak(v, v | sleepers_bit, std::memory_order_acq_rel, std::memory_order_acquire)) {
      continue;
    }
    const wait_result r = futex_wait(word, v | sleepers_bit, until);
    if (happened(word.load(std::memory_order_acquire), since)) {
      event_spin.record(start_ns);
      return wait_result::ok;
    }
    if (r == wait_result::interrupted) return r;
    if (r == wait_result::timed_out && until.expired()) return r;
  }
}

// ---- for observers (detail/state_probe.hpp) ----

bool detail::describe_event(const std::byte* bytes, std::size_t size, sync_view& out) noexcept {
  if (size < sizeof(detail::event_state)) return false;
  const auto* s = reinterpret_cast<const detail::event_state*>(bytes);
  if (s->magic != detail::event_state::magic_value || s->version != detail::event_state::current_version) return false;
  const std::uint32_t word = s->word.load(std::memory_order_relaxed);
  out.kind = "Event";
  out.is_set = (word & flag_bit) != 0;
  out.value = *out.is_set ? 1 : 0;
  out.may_have_waiters = (word & sleepers_bit) != 0;
  return true;
}

}  // namespace mphost::ipc
