#pragma once
// Private: the short adaptive spin that precedes every futex sleep.
//
// A wake-up of a process sleeping on the other core costs ~20 us on the
// machines we target, while two processes that poll a shared cache line see
// each other's stores within ~0.1 us. So a waiter first polls its condition
// for a short, bounded time. The budget adapts per call site: when the
// condition recently became true soon after the wait began, the next spin
// may last up to twice as long as that took (bounded by `max`); when waits
// keep ending in a sleep, the budget halves down to `min`, so a waiter that
// waits long does not burn a core.
//
// Past the first few hundred nanoseconds the spin yields the core between looks (see
// spin()), which keeps it cheap when processes outnumber cores.
//
// An adaptive_spin is process-local state (never placed in shared memory);
// concurrent use from several threads only blurs the estimate.

#include <sched.h>

#include <atomic>
#include <chrono>
#include <cstdint>

namespace mphost::ipc::detail {

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#else
  std::atomic_signal_fence(std::memory_order_seq_cst);
#endif
}

inline std::int64_t monotonic_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

class adaptive_spin {
 public:
  // How long a spin runs before it starts yielding: by default, and for a
  // waiter that expects a reply from a peer running now (channel::prompt_peer).
  static constexpr std::int64_t pure_spin_ns = 300;
  static constexpr std::int64_t prompt_spin_ns = 4000;

  constexpr adaptive_spin(std::uint32_t min_ns, std::uint32_t max_ns) noexcept
      : min_(min_ns), max_(max_ns), budget_(max_ns / 2) {}

  // Polls `ready()` until it returns true (-> true) or the budget is spent
  // (-> false). `start_ns` is when the whole wait began. `pure_ns` is how
  // long the spin runs before it starts yielding (a caller that expects its
  // peer on the other core to answer within microseconds may raise it).
  //
  // The first few hundred nanoseconds are a pure spin: a peer running on the
  // other core and answering at once is seen within that. After that each
  // round yields the core (sched_yield), so that when the peer shares our
  // core, or processes outnumber cores, the peer can run instead of being
  // kept off the core by our spinning. (Measured: a ping-pong of two
  // processes pinned to one core takes ~3.5 us a round trip this way, ~7 us
  // with a 2 us pure spin; on two cores both take ~0.4 us.)
  template <class Ready>
  bool spin(Ready&& ready, std::int64_t start_ns, std::int64_t pure_ns = pure_spin_ns) noexcept {
    const std::int64_t budget = budget_.load(std::memory_order_relaxed);
    if (pure_spin(ready, start_ns, budget < pure_ns ? budget : pure_ns)) return true;
    for (;;) {
      if (monotonic_ns() - start_ns >= budget) return false;
      ::sched_yield();
      for (int i = 0; i < 16; ++i) {
        if (ready()) return true;
        cpu_relax();
      }
    }
  }

  // spin() whose pure phase learns (for a reader whose peer may answer
  // from another core within microseconds, a Pipe's request and reply): the
  // long pure spin (prompt_spin_ns) is used while it keeps catching the
  // condition before its end, dropped at the first wait it did not (the
  // peer shares our core, or is slow to answer: spinning would only keep it
  // off the core), and tried again on every probe_every-th wait.
  template <class Ready>
  bool spin_learning(Ready&& ready, std::int64_t start_ns) noexcept {
    const std::uint32_t turn = turns_.load(std::memory_order_relaxed) + 1;
    turns_.store(turn, std::memory_order_relaxed);
    const std::int32_t score = pure_score_.load(std::memory_order_relaxed);
    if (score <= 0 && turn % probe_every != 0) return spin(ready, start_ns);
    const std::int64_t budget = budget_.load(std::memory_order_relaxed);
    const bool found = pure_spin(ready, start_ns, budget < prompt_spin_ns ? budget : prompt_spin_ns);
    pure_score_.store(found ? (score < max_score ? score + 1 : max_score) : 0, std::memory_order_relaxed);
    return found || spin(ready, start_ns);
  }

  // Reports how long a wait that began at `start_ns` took in all, spin and
  // sleep included, once its condition came true.
  void record(std::int64_t start_ns) noexcept {
    const std::int64_t took = monotonic_ns() - start_ns;
    std::int64_t budget = budget_.load(std::memory_order_relaxed);
    if (took <= static_cast<std::int64_t>(max_)) {
      const std::int64_t want = took * 2 > static_cast<std::int64_t>(max_) ? max_ : took * 2;
      budget = (budget + want) / 2;
    } else {
      budget /= 2;
    }
    if (budget < static_cast<std::int64_t>(min_)) budget = min_;
    if (budget > static_cast<std::int64_t>(max_)) budget = max_;
    budget_.store(static_cast<std::uint32_t>(budget), std::memory_order_relaxed);
  }

 private:
  // Polls `ready()` without yielding until it returns true (-> true) or
  // `until_ns` have passed since `start_ns` (-> false); at least one round.
  template <class Ready>
  static bool pure_spin(Ready& ready, std::int64_t start_ns, std::int64_t until_ns) noexcept {
    for (;;) {
      for (int i = 0; i < 16; ++i) {
        if (ready()) return true;
        cpu_relax();
      }
      if (monotonic_ns() - start_ns >= until_ns) return false;
    }
  }

  static constexpr std::uint32_t probe_every = 16;
  static constexpr std::int32_t max_score = 8;

  std::uint32_t min_;
  std::uint32_t max_;
  std::atomic<std::uint32_t> budget_;
  // spin_learning: how many long pure spins paid in a row, and a turn count
  // for the probes (racy across threads, which only blurs them).
  std::atomic<std::int32_t> pure_score_{0};
  std::atomic<std::uint32_t> turns_{0};
};

}  // namespace mphost::ipc::detail
