// mphost_bench_limits: what this machine allows, measured without Python.
//
// Every benchmark row in docs/PERFORMANCE.md is bounded by something the
// hardware and kernel impose: how fast one process can wake another (pipe,
// futex, eventfd, or two cores spinning on one cache line), how fast memory
// copies, how long fork and posix_spawn take, what a process-shared mutex
// costs. This program measures those raw costs between two real processes
// and prints them as one JSON object on stdout:
//
//   {"<name>": {"value": <number>, "unit": "<unit>", "what": "<sentence>"}, ...}
//
// Latencies are medians over many trips, each timed on its own with
// CLOCK_MONOTONIC. A watchdog (alarm) turns a hang into exit code 124, and
// children die with their parent (PR_SET_PDEATHSIG), so the program always
// ends. `--quick` runs every measurement with far fewer iterations.

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include <fcntl.h>
#include <immintrin.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace mphost::bench {
namespace {

using clock_type = std::chrono::steady_clock;

constexpr unsigned watchdog_seconds = 120;

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "mphost_bench_limits: %s: %s\n", what, std::strerror(errno));
  std::exit(1);
}

double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

double median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  auto mid = v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2);
  std::nth_element(v.begin(), mid, v.end());
  return *mid;
}

// One JSON member per measurement, printed in the order measured.
struct report {
  std::vector<std::string> members_;

  void add(std::string_view name, double value, std::string_view unit, const std::string& what) {
    char buf[1024];
    std::snprintf(buf, sizeof buf, "  \"%.*s\": {\"value\": %.6g, \"unit\": \"%.*s\", \"what\": \"%.*s\"}",
                  static_cast<int>(name.size()), name.data(), value,
                  static_cast<int>(unit.size()), unit.data(),
                  static_cast<int>(what.size()), what.c_str());
    members_.emplace_back(buf);
    std::fprintf(stderr, "%-28.*s %12.4g %.*s\n", static_cast<int>(name.size()), name.data(), value,
                 static_cast<int>(unit.size()), unit.data());
  }

  void print() const {
    std::printf("{\n");
    for (std::size_t i = 0; i < members_.size(); ++i)
      std::printf("%s%s\n", members_[i].c_str(), i + 1 < members_.size() ? "," : "");
    std::printf("}\n");
  }
};

// Anonymous shared mapping, inherited by fork; zero-filled.
void* shared_block(std::size_t size) {
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) die("mmap");
  return p;
}

// Which CPU each side of a two-process measurement runs on (-1: anywhere).
// On a virtual machine a wake-up that crosses to another (idle) vCPU costs
// far more than one that stays on the same CPU, so latencies are measured
// both ways.
struct placement {
  int parent_cpu_ = -1;
  int child_cpu_ = -1;
};

void pin_to(int cpu) {
  if (cpu < 0) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (sched_setaffinity(0, sizeof set, &set) != 0) die("sched_setaffinity");
}

// Pins the calling process for its lifetime, then restores its CPU mask.
class scoped_pin {
 public:
  explicit scoped_pin(int cpu) : active_(cpu >= 0) {
    if (!active_) return;
    if (sched_getaffinity(0, sizeof saved_, &saved_) != 0) die("sched_getaffinity");
    pin_to(cpu);
  }
  ~scoped_pin() {
    if (active_) sched_setaffinity(0, sizeof saved_, &saved_);
  }
  scoped_pin(const scoped_pin&) = delete;             // restores once
  scoped_pin& operator=(const scoped_pin&) = delete;

 private:
  bool active_;
  cpu_set_t saved_{};
};

// fork() a child that runs body() and _exit(0)s; it dies with the parent.
pid_t fork_child(const std::function<void()>& body, int cpu = -1) {
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(3);
    alarm(watchdog_seconds);
    pin_to(cpu);
    body();
    _exit(0);
  }
  return pid;
}

void reap(pid_t pid) {
  int status = 0;
  if (waitpid(pid, &status, 0) < 0) die("waitpid");
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::fprintf(stderr, "mphost_bench_limits: child %d failed (status %d)\n", pid, status);
    std::exit(1);
  }
}

void write_all(int fd, const void* data, std::size_t n) {
  auto p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      die("write");
    }
    p += w;
    n -= static_cast<std::size_t>(w);
  }
}

void read_all(int fd, void* data, std::size_t n) {
  auto p = static_cast<char*>(data);
  while (n > 0) {
    ssize_t r = read(fd, p, n);
    if (r < 0) {
      if (errno == EINTR) continue;
      die("read");
    }
    if (r == 0) {
      std::fprintf(stderr, "mphost_bench_limits: unexpected end of pipe\n");
      std::exit(1);
    }
    p += r;
    n -= static_cast<std::size_t>(r);
  }
}

// Times `trips` round trips of ping() after `warm` untimed ones; median µs.
double time_trips(int warm, int trips, const std::function<void()>& ping) {
  for (int i = 0; i < warm; ++i) ping();
  std::vector<double> us;
  us.reserve(static_cast<std::size_t>(trips));
  for (int i = 0; i < trips; ++i) {
    auto t0 = clock_type::now();
    ping();
    us.push_back(seconds_since(t0) * 1e6);
  }
  return median(std::move(us));
}

// ---- pipe ------------------------------------------------------------------

double pipe_round_trip_us(int warm, int trips, placement where) {
  scoped_pin pin(where.parent_cpu_);
  int there[2], back[2];
  if (pipe(there) < 0 || pipe(back) < 0) die("pipe");
  const int total = warm + trips;
  pid_t child = fork_child([&] {
    close(there[1]);
    close(back[0]);
    char byte = 0;
    for (int i = 0; i < total; ++i) {
      read_all(there[0], &byte, 1);
      write_all(back[1], &byte, 1);
    }
  }, where.child_cpu_);
  close(there[0]);
  close(back[1]);
  char byte = 'x';
  double us = time_trips(warm, trips, [&] {
    write_all(there[1], &byte, 1);
    read_all(back[0], &byte, 1);
  });
  close(there[1]);
  close(back[0]);
  reap(child);
  return us;
}

// ---- futex -----------------------------------------------------------------

long futex(std::atomic<std::uint32_t>* word, int op, std::uint32_t value) {
  return syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word), op, value, nullptr, nullptr, 0);
}

// A one-way doorbell in shared memory: a sequence number the peer waits to
// see change, and a count of sleepers so that post() makes a system call
// only when someone is actually asleep (both sides use seq_cst, so either
// the poster sees the sleeper or the sleeper sees the new sequence number).
struct doorbell {
  std::atomic<std::uint32_t> seq_{0};
  std::atomic<std::uint32_t> sleepers_{0};
  char pad_[56];

  void post() {
    seq_.fetch_add(1, std::memory_order_seq_cst);
    if (sleepers_.load(std::memory_order_seq_cst) != 0) futex(&seq_, FUTEX_WAKE, 1);
  }

  // Waits until seq_ differs from seen; spins spin_ns first; returns new seq.
  std::uint32_t wait(std::uint32_t seen, std::int64_t spin_ns) {
    std::uint32_t now = seq_.load(std::memory_order_acquire);
    if (now != seen) return now;
    if (spin_ns > 0) {
      auto until = clock_type::now() + std::chrono::nanoseconds(spin_ns);
      for (unsigned i = 1;; ++i) {
        _mm_pause();
        now = seq_.load(std::memory_order_acquire);
        if (now != seen) return now;
        if ((i & 63) == 0 && clock_type::now() > until) break;
      }
    }
    sleepers_.fetch_add(1, std::memory_order_seq_cst);
    while ((now = seq_.load(std::memory_order_seq_cst)) == seen) {
      long r = futex(&seq_, FUTEX_WAIT, seen);
      if (r < 0 && errno != EAGAIN && errno != EINTR) die("futex wait");
    }
    sleepers_.fetch_sub(1, std::memory_order_seq_cst);
    return now;
  }
};

double futex_round_trip_us(int warm, int trips, std::int64_t spin_ns, placement where) {
  scoped_pin pin(where.parent_cpu_);
  auto* bells = static_cast<doorbell*>(shared_block(sizeof(doorbell) * 2));
  new (&bells[0]) doorbell();
  new (&bells[1]) doorbell();
  doorbell& there = bells[0];
  doorbell& back = bells[1];
  const int total = warm + trips;
  pid_t child = fork_child([&] {
    std::uint32_t seen = 0;
    for (int i = 0; i < total; ++i) {
      seen = there.wait(seen, spin_ns);
      back.post();
    }
  }, where.child_cpu_);
  std::uint32_t seen = 0;
  double us = time_trips(warm, trips, [&] {
    there.post();
    seen = back.wait(seen, spin_ns);
  });
  reap(child);
  munmap(bells, sizeof(doorbell) * 2);
  return us;
}

// One-way latency of waking a process that is really asleep in FUTEX_WAIT on
// another CPU: the parent waits until the child has announced itself as a
// sleeper and lets 200 us pass, then posts and spins for the answer (the
// answer costs ~0.1 us when spun on, so the figure is the wake-up).
double futex_wake_sleeper_us(int trips, placement where) {
  scoped_pin pin(where.parent_cpu_);
  auto* bells = static_cast<doorbell*>(shared_block(sizeof(doorbell) * 2));
  new (&bells[0]) doorbell();
  new (&bells[1]) doorbell();
  doorbell& there = bells[0];
  doorbell& back = bells[1];
  pid_t child = fork_child([&] {
    std::uint32_t seen = 0;
    for (int i = 0; i < trips; ++i) {
      seen = there.wait(seen, 0);
      back.post();
    }
  }, where.child_cpu_);
  std::uint32_t seen = 0;
  std::vector<double> us;
  for (int i = 0; i < trips; ++i) {
    while (there.sleepers_.load(std::memory_order_seq_cst) == 0) _mm_pause();
    usleep(200);
    auto t0 = clock_type::now();
    there.post();
    seen = back.wait(seen, 10'000'000);
    us.push_back(seconds_since(t0) * 1e6);
  }
  reap(child);
  munmap(bells, sizeof(doorbell) * 2);
  return median(std::move(us));
}

// ---- eventfd ---------------------------------------------------------------

double eventfd_round_trip_us(int warm, int trips, placement where) {
  scoped_pin pin(where.parent_cpu_);
  int there = eventfd(0, 0), back = eventfd(0, 0);
  if (there < 0 || back < 0) die("eventfd");
  const int total = warm + trips;
  pid_t child = fork_child([&] {
    std::uint64_t v = 0;
    for (int i = 0; i < total; ++i) {
      read_all(there, &v, sizeof v);
      v = 1;
      write_all(back, &v, sizeof v);
    }
  }, where.child_cpu_);
  std::uint64_t v = 1;
  double us = time_trips(warm, trips, [&] {
    v = 1;
    write_all(there, &v, sizeof v);
    read_all(back, &v, sizeof v);
  });
  reap(child);
  close(there);
  close(back);
  return us;
}

// ---- memory ----------------------------------------------------------------

void clobber(void* p) { asm volatile("" : : "r"(p) : "memory"); }

// GB/s (10^9 bytes/s) copying the same 1 MiB block again and again (it stays
// in cache), best of three rounds.
double memcpy_hot_gbps(int copies) {
  constexpr std::size_t block = 1 << 20;
  std::vector<char> src(block, 'a'), dst(block, 'b');
  double best = 0;
  for (int round = 0; round < 3; ++round) {
    auto t0 = clock_type::now();
    for (int i = 0; i < copies; ++i) {
      std::memcpy(dst.data(), src.data(), block);
      clobber(dst.data());
    }
    best = std::max(best, static_cast<double>(block) * copies / seconds_since(t0) / 1e9);
  }
  return best;
}

// GB/s copying successive 1 MiB blocks of a large buffer into another large
// buffer (main-memory bandwidth, as a stream of large messages sees it).
double memcpy_stream_gbps(std::size_t total) {
  constexpr std::size_t block = 1 << 20;
  std::vector<char> src(total, 'a'), dst(total, 'b');
  double best = 0;
  for (int round = 0; round < 3; ++round) {
    auto t0 = clock_type::now();
    for (std::size_t off = 0; off < total; off += block) {
      std::memcpy(dst.data() + off, src.data() + off, block);
      clobber(dst.data() + off);
    }
    best = std::max(best, static_cast<double>(total) / seconds_since(t0) / 1e9);
  }
  return best;
}

// ---- process creation ------------------------------------------------------

double fork_exit_wait_us(int count, std::size_t resident) {
  std::vector<char> ballast(resident, 1);  // touched: really resident
  clobber(ballast.data());
  std::vector<double> us;
  for (int i = 0; i < count; ++i) {
    auto t0 = clock_type::now();
    pid_t pid = fork();
    if (pid < 0) die("fork");
    if (pid == 0) _exit(0);
    reap(pid);
    us.push_back(seconds_since(t0) * 1e6);
  }
  return median(std::move(us));
}

double posix_spawn_true_us(int count) {
  const char* path = "/bin/true";
  char* argv[] = {const_cast<char*>("true"), nullptr};
  std::vector<double> us;
  for (int i = 0; i < count; ++i) {
    auto t0 = clock_type::now();
    pid_t pid = 0;
    int rc = posix_spawn(&pid, path, nullptr, nullptr, argv, environ);
    if (rc != 0) {
      errno = rc;
      die("posix_spawn /bin/true");
    }
    reap(pid);
    us.push_back(seconds_since(t0) * 1e6);
  }
  return median(std::move(us));
}

// ---- process-shared mutex --------------------------------------------------

struct shared_counter {
  pthread_mutex_t mutex_;
  std::int64_t value_;
  std::atomic<int> ready_;
  std::atomic<int> go_;
};

shared_counter* make_shared_counter() {
  auto* c = static_cast<shared_counter*>(shared_block(sizeof(shared_counter)));
  pthread_mutexattr_t attr;
  pthread_mutexattr_init(&attr);
  pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
  if (pthread_mutex_init(&c->mutex_, &attr) != 0) die("pthread_mutex_init");
  pthread_mutexattr_destroy(&attr);
  return c;
}

double mutex_uncontended_pairs_per_s(int pairs) {
  shared_counter* c = make_shared_counter();
  auto t0 = clock_type::now();
  for (int i = 0; i < pairs; ++i) {
    pthread_mutex_lock(&c->mutex_);
    ++c->value_;
    pthread_mutex_unlock(&c->mutex_);
  }
  double rate = pairs / seconds_since(t0);
  if (c->value_ != pairs) {
    std::fprintf(stderr, "mphost_bench_limits: uncontended counter is wrong\n");
    std::exit(1);
  }
  munmap(c, sizeof *c);
  return rate;
}

double mutex_two_process_increments_per_s(int per_process) {
  shared_counter* c = make_shared_counter();
  auto body = [c, per_process] {
    c->ready_.fetch_add(1);
    while (c->go_.load() == 0) _mm_pause();
    for (int i = 0; i < per_process; ++i) {
      pthread_mutex_lock(&c->mutex_);
      ++c->value_;
      pthread_mutex_unlock(&c->mutex_);
    }
  };
  pid_t a = fork_child(body);
  pid_t b = fork_child(body);
  while (c->ready_.load() < 2) usleep(100);
  auto t0 = clock_type::now();
  c->go_.store(1);
  reap(a);
  reap(b);
  double rate = 2.0 * per_process / seconds_since(t0);
  if (c->value_ != 2LL * per_process) {
    std::fprintf(stderr, "mphost_bench_limits: contended counter lost updates\n");
    std::exit(1);
  }
  munmap(c, sizeof *c);
  return rate;
}

int run(bool quick) {
  const int k = quick ? 10 : 1;
  const int trips = 20000 / k;
  const int warm = 1000 / k;
  report r;
  // Two processes on two different CPUs (when there are two), then on one.
  const bool two_cpus = sysconf(_SC_NPROCESSORS_ONLN) >= 2;
  const placement apart = two_cpus ? placement{0, 1} : placement{};
  const placement together{0, 0};
  const char* apart_text = two_cpus ? "on 2 different CPUs" : "(1 CPU only)";
  auto said = [](const char* what, const char* where) { return std::string(what) + " " + where; };
  r.add("pipe_rtt_us", pipe_round_trip_us(warm, trips, apart), "us",
        said("round trip of one byte between two processes over two pipes, median,", apart_text));
  r.add("futex_wake_us", futex_wake_sleeper_us(quick ? 100 : 1000, apart), "us",
        said("one-way wake-up of a process asleep in FUTEX_WAIT, median,", apart_text));
  r.add("futex_rtt_us", futex_round_trip_us(warm, trips, 0, apart), "us",
        said("ping-pong through two futex words in shared memory, no spinning (a side that "
             "finds the word already changed does not sleep), median,", apart_text));
  r.add("futex_spin_rtt_us", futex_round_trip_us(warm, trips * 5, 50'000, apart), "us",
        said("round trip through two futex words, spinning up to 50 us before sleeping, median,",
             apart_text));
  r.add("eventfd_rtt_us", eventfd_round_trip_us(warm, trips, apart), "us",
        said("round trip between two processes over two eventfds, median,", apart_text));
  r.add("pipe_rtt_same_cpu_us", pipe_round_trip_us(warm, trips, together), "us",
        "round trip of one byte over two pipes, both processes on one CPU, median");
  r.add("futex_rtt_same_cpu_us", futex_round_trip_us(warm, trips, 0, together), "us",
        "round trip through two futex words, both processes on one CPU, median");
  r.add("memcpy_1mib_hot_gbps", memcpy_hot_gbps(4000 / k), "GB/s",
        "memcpy of one 1 MiB block again and again (cache-resident), best of 3");
  r.add("memcpy_1mib_stream_gbps", memcpy_stream_gbps((quick ? 64u : 512u) << 20), "GB/s",
        "memcpy of successive 1 MiB blocks through a large buffer (main memory), best of 3");
  r.add("fork_exit_wait_us", fork_exit_wait_us(400 / k, 0), "us",
        "fork + child _exit(0) + waitpid of a small process (median)");
  r.add("fork_exit_wait_64mib_us", fork_exit_wait_us(200 / k, 64u << 20), "us",
        "fork + _exit + waitpid of a process with 64 MiB resident (median)");
  r.add("posix_spawn_true_us", posix_spawn_true_us(200 / k), "us",
        "posix_spawn of /bin/true + waitpid (median)");
  r.add("mutex_uncontended_pairs_per_s", mutex_uncontended_pairs_per_s(20'000'000 / k), "pairs/s",
        "lock + unlock of a process-shared robust pthread mutex, one process");
  r.add("mutex_2proc_increments_per_s", mutex_two_process_increments_per_s(2'000'000 / k),
        "increments/s", "two processes incrementing one shared counter under a process-shared mutex");
  r.print();
  return 0;
}

}  // namespace
}  // namespace mphost::bench

int main(int argc, char** argv) {
  bool quick = false;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--quick") {
      quick = true;
    } else if (arg == "-h" || arg == "--help") {
      std::printf("usage: %s [--quick]\nPrints this machine's raw IPC and process costs as JSON.\n",
                  argv[0]);
      return 0;
    } else {
      std::fprintf(stderr, "%s: unknown argument '%s' (try --help)\n", argv[0], argv[i]);
      return 2;
    }
  }
  signal(SIGALRM, [](int) { _exit(124); });
  alarm(mphost::bench::watchdog_seconds);
  return mphost::bench::run(quick);
}
