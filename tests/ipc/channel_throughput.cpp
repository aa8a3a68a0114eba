// A quick look at the IPC core's speed, outside the test suite: run
// `mphost_ipc_throughput` by hand. It prints figures; it asserts nothing
// (the project's comparative benchmarks live in tools/bench).
//
//   messages/s for small messages, 1 -> 1, 2 -> 1 and 4 -> 2 processes
//   round trip over two channels (median and 99th percentile)
//   the same round trip over raw shared words (spinning, and futex only)
//   MB/s for 1 MiB messages
//   uncontended lock and semaphore costs

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <new>
#include <string>
#include <vector>

#include "mphost/ipc/channel.hpp"
#include "mphost/ipc/futex.hpp"
#include "mphost/ipc/robust_mutex.hpp"
#include "mphost/ipc/segment.hpp"
#include "mphost/ipc/semaphore.hpp"

using namespace mphost::ipc;
using clock_type = std::chrono::steady_clock;

namespace {

double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

pid_t spawn(const std::function<int()>& fn) {
  const pid_t pid = ::fork();
  if (pid == 0) ::_exit(fn());
  return pid;
}

int join(pid_t pid) {
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

void throughput(int writers, int readers, std::size_t size, long per_writer, bool unbounded) {
  channel_options o;
  o.capacity = 1 << 20;
  o.unbounded = unbounded;
  channel ch = channel::create(o, endpoint_role::both);
  const std::string name = ch.name();
  const long total = per_writer * writers;
  std::vector<pid_t> pids;
  segment go = segment::create(4096);
  auto* start = new (go.base()) std::atomic<int>(0);
  for (int r = 0; r < readers; ++r) {
    pids.push_back(spawn([&, r] {
      channel in = channel::open(name, endpoint_role::reader);
      message m;
      // Copy every payload out, as a binding making a bytes object does.
      std::vector<std::byte> copy(size);
      const long mine = total / readers + (r < total % readers ? 1 : 0);
      for (long i = 0; i < mine; ++i) {
        if (in.recv(m, deadline::after(std::chrono::seconds(60))) != wait_result::ok) return 1;
        std::memcpy(copy.data(), m.bytes().data(), m.size());
      }
      return copy.empty() || copy[0] == std::byte{7} ? 0 : 2;
    }));
  }
  for (int w = 0; w < writers; ++w) {
    pids.push_back(spawn([&] {
      channel out = channel::open(name, endpoint_role::writer);
      std::vector<std::byte> payload(size, std::byte{7});
      while (start->load() == 0) {
      }
      for (long i = 0; i < per_writer; ++i) {
        if (out.send(payload, deadline::after(std::chrono::seconds(60))) != wait_result::ok) return 1;
      }
      return 0;
    }));
  }
  ch.close();
  ::usleep(50000);
  const auto t0 = clock_type::now();
  start->store(1);
  int bad = 0;
  for (pid_t p : pids) bad += join(p);
  const double s = seconds_since(t0);
  go.unlink();
  channel::remove(name);
  std::printf("  %d -> %d, %4zu-byte messages%s: %10.0f msgs/s  (%.1f MB/s)%s\n", writers, readers, size,
              unbounded ? ", unbounded" : ",   bounded", static_cast<double>(total) / s,
              static_cast<double>(total) * static_cast<double>(size) / s / 1e6, bad ? "  [FAILED]" : "");
}

void print_latencies(const char* what, std::vector<double>& ns) {
  std::sort(ns.begin(), ns.end());
  std::printf("  %-44s median %7.2f us   p99 %7.2f us\n", what, ns[ns.size() / 2] / 1000.0, ns[ns.size() * 99 / 100] / 1000.0);
}

void round_trip(int rounds, std::size_t size) {
  channel_options o;
  o.capacity = 64 * 1024;
  channel ping = channel::create(o, endpoint_role::writer);
  channel pong = channel::create(o, endpoint_role::reader);
  const std::string ping_name = ping.name();
  const std::string pong_name = pong.name();
  const std::uint64_t t1 = ping.hand_over(endpoint_role::reader);
  const std::uint64_t t2 = pong.hand_over(endpoint_role::writer);
  const pid_t echo = spawn([&] {
    release_endpoints_before_exec();
    channel in = channel::open(ping_name, endpoint_role::reader, t1);
    channel out = channel::open(pong_name, endpoint_role::writer, t2);
    message m;
    for (;;) {
      const wait_result r = in.recv(m);
      if (r == wait_result::closed) return 0;
      if (r != wait_result::ok) return 1;
      if (out.send(m.bytes()) != wait_result::ok) return 2;
    }
  });
  std::vector<std::byte> payload(size, std::byte{1});
  message m;
  std::vector<double> ns;
  ns.reserve(static_cast<std::size_t>(rounds));
  for (int i = 0; i < rounds + 1000; ++i) {
    const auto t0 = clock_type::now();
    ping.send(payload);
    pong.recv(m);
    if (i >= 1000) ns.push_back(std::chrono::duration<double, std::nano>(clock_type::now() - t0).count());
  }
  ping.close();
  join(echo);
  pong.close();
  channel::remove(ping_name);
  channel::remove(pong_name);
  char what[64];
  std::snprintf(what, sizeof what, "channel round trip, %zu-byte message:", size);
  print_latencies(what, ns);
}

// The floor: the same ping-pong over two words, spinning, or sleeping only.
void raw_round_trip(int rounds, bool spin) {
  segment seg = segment::create(4096);
  auto* words = new (seg.base()) futex_word[32]{};
  futex_word& a = words[0];
  futex_word& b = words[16];
  auto wait_for = [spin](futex_word& w, std::uint32_t v) {
    for (;;) {
      const std::uint32_t now = w.load(std::memory_order_acquire);
      if (now == v) return;
      if (!spin) futex_wait(w, now, deadline::infinite());
    }
  };
  const pid_t echo = spawn([&] {
    for (std::uint32_t i = 1; i <= static_cast<std::uint32_t>(rounds + 1000); ++i) {
      wait_for(a, i);
      b.store(i, std::memory_order_release);
      if (!spin) futex_wake(b, 1);
    }
    return 0;
  });
  std::vector<double> ns;
  for (std::uint32_t i = 1; i <= static_cast<std::uint32_t>(rounds + 1000); ++i) {
    const auto t0 = clock_type::now();
    a.store(i, std::memory_order_release);
    if (!spin) futex_wake(a, 1);
    wait_for(b, i);
    if (i > 1000) ns.push_back(std::chrono::duration<double, std::nano>(clock_type::now() - t0).count());
  }
  join(echo);
  seg.unlink();
  print_latencies(spin ? "raw shared-word round trip, spinning:" : "raw futex round trip, no spinning:", ns);
}

void locks() {
  segment seg = segment::create(4096);
  auto* m = new (seg.base()) robust_mutex();
  constexpr int n = 2000000;
  auto t0 = clock_type::now();
  for (int i = 0; i < n; ++i) {
    (void)m->lock();
    m->unlock();
  }
  std::printf("  robust_mutex lock+unlock, uncontended: %6.1f ns\n", seconds_since(t0) * 1e9 / n);
  seg.unlink();
  semaphore lock = semaphore::create(semlock_kind::semaphore, 1, 1);
  t0 = clock_type::now();
  for (int i = 0; i < n; ++i) {
    (void)lock.acquire();
    lock.release();
  }
  std::printf("  semlock (Lock) acquire+release:        %6.1f ns\n", seconds_since(t0) * 1e9 / n);
  semaphore::unlink(lock.name());
  semaphore rlock = semaphore::create(semlock_kind::recursive_mutex, 1, 1);
  t0 = clock_type::now();
  for (int i = 0; i < n; ++i) {
    (void)rlock.acquire();
    rlock.release();
  }
  std::printf("  semlock (RLock) acquire+release:       %6.1f ns\n", seconds_since(t0) * 1e9 / n);
  semaphore::unlink(rlock.name());
}

}  // namespace

int main() {
  std::printf("mphost ipc core, quick figures (not a benchmark of record)\n");
  throughput(1, 1, 32, 3000000, false);
  throughput(1, 1, 32, 3000000, true);
  throughput(2, 1, 32, 1500000, false);
  throughput(4, 2, 32, 750000, false);
  throughput(10, 1, 32, 300000, false);
  throughput(1, 1, 1 << 20, 2000, false);
  throughput(1, 1, 200 << 10, 10000, false);
  round_trip(100000, 32);
  raw_round_trip(100000, true);
  raw_round_trip(100000, false);
  locks();
  return 0;
}
