// The snapshot of a program tree (tree_state.hpp): finding the registry,
// reading its name and process tables with pread, and what /proc says of
// each process. Classifying the names is tree_state_probe.cpp.
#include "mphost/ipc/tree_state.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <system_error>

#include "detail/registry_layout.hpp"
#include "detail/tree_reader.hpp"
#include "mphost/ipc/error.hpp"
#include "mphost/ipc/process_identity.hpp"
#include "mphost/ipc/resource_registry.hpp"

namespace mphost::ipc {
namespace detail {

read_only_file::read_only_file(const std::string& name) noexcept {
  const std::string path = "/dev/shm/" + name;
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd_ < 0) {
    error_ = errno;
    return;
  }
  struct stat st{};
  if (::fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode)) {
    error_ = EINVAL;
  } else if (st.st_uid != ::geteuid()) {
    error_ = EACCES;
  } else {
    size_ = static_cast<std::uint64_t>(st.st_size);
    return;
  }
  ::close(fd_);
  fd_ = -1;
}

read_only_file::~read_only_file() {
  if (fd_ >= 0) ::close(fd_);
}

std::size_t read_only_file::read(std::uint64_t offset, void* out, std::size_t length) const noexcept {
  if (fd_ < 0) return 0;
  std::size_t done = 0;
  while (done < length) {
    const ssize_t n = ::pread(fd_, static_cast<char*>(out) + done, length - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += static_cast<std::size_t>(n);
  }
  return done;
}

}  // namespace detail

namespace {

using namespace detail;

// A copy of a registry: its header, and the touched pages of its tables.
class registry_copy {
 public:
  explicit registry_copy(const std::string& name) : file_(name) {
    if (!file_) throw_errno(file_.error(), ("cannot open registry '" + name + "'").c_str());
    header_ = std::make_unique<aligned_page>();
    if (file_.read(0, header_->bytes, sizeof header_->bytes) != sizeof header_->bytes) throw_errno(EINVAL, "not a registry");
    const registry_header& h = header();
    if (h.ready.load(std::memory_order_acquire) != 1 || h.magic != registry_magic || h.version != registry_version ||
        h.slot_count == 0 || h.registration_count == 0 || h.process_count == 0 ||
        h.slot_count > name_bitmap_words * 64 * name_group_slots ||
        h.process_count > process_bitmap_words * 64 * process_group_slots ||
        file_.size() < registry_bytes(h.slot_count, h.registration_count, h.process_count)) {
      throw_errno(EINVAL, ("'" + name + "' is not a registry").c_str());
    }
  }

  const registry_header& header() const noexcept { return *reinterpret_cast<const registry_header*>(header_->bytes); }

  // fn(slot) for every slot of a table in a page marked touched; each page
  // is copied first (pread), so the target's file is never mapped.
  template <typename Slot, typename F>
  void for_each(const std::atomic<std::uint64_t>* bitmap, std::size_t group_slots, std::uint64_t table_offset,
                std::size_t count, F&& fn) const {
    const std::size_t groups = (count + group_slots - 1) / group_slots;
    std::vector<Slot> page(group_slots);
    for (std::size_t g = 0; g < groups; ++g) {
      if ((bitmap[g / 64].load(std::memory_order_relaxed) & (std::uint64_t{1} << (g % 64))) == 0) continue;
      const std::size_t first = g * group_slots;
      const std::size_t n = std::min(count, first + group_slots) - first;
      const std::size_t got = file_.read(table_offset + first * sizeof(Slot), page.data(), n * sizeof(Slot));
      for (std::size_t i = 0; i < got / sizeof(Slot); ++i) fn(page[i]);
    }
  }

  std::vector<std::pair<std::string, pid_t>> names() const {
    std::vector<std::pair<std::string, pid_t>> out;
    const registry_header& h = header();
    for_each<name_slot>(h.touched, name_group_slots, registry_header_bytes, h.slot_count, [&](const name_slot& s) {
      if ((s.tag.load(std::memory_order_relaxed) & 1) == 0) return;
      const std::size_t length = std::min<std::size_t>(s.length, resource_registry::max_name_length);
      std::string name(s.name, ::strnlen(s.name, length));
      if (!name.empty() && name_tag(name) == s.tag.load(std::memory_order_relaxed)) out.emplace_back(std::move(name), s.creator);
    });
    return out;
  }

  std::vector<process_record> processes() const {
    std::vector<process_record> out;
    const registry_header& h = header();
    const std::uint64_t offset = registry_header_bytes + std::uint64_t{h.slot_count} * sizeof(name_slot) +
                                 std::uint64_t{h.registration_count} * sizeof(registration_slot);
    for_each<process_slot>(h.process_touched, process_group_slots, offset, h.process_count, [&](const process_slot& s) {
      if (auto r = read_process_slot(s)) out.push_back(std::move(*r));
    });
    return out;
  }

 private:
  struct aligned_page {
    alignas(64) std::byte bytes[registry_header_bytes];
  };
  read_only_file file_;
  std::unique_ptr<aligned_page> header_;
};

// /proc/<pid>/stat: state letter, CPU seconds, start time; false if gone.
bool read_proc_stat(pid_t pid, char& state, double& cpu, std::uint64_t& start_time) noexcept {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buf[1024];
  const ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return false;
  buf[n] = '\0';
  // The command may hold spaces and parentheses: fields start after the last ')'.
  const char* p = std::strrchr(buf, ')');
  if (p == nullptr || p[1] != ' ') return false;
  p += 2;
  state = *p;
  // Fields 3.. from here; utime 14, stime 15, starttime 22.
  unsigned long long field[23] = {};
  int index = 3;
  for (const char* q = p; *q != '\0' && index <= 22;) {
    while (*q == ' ') ++q;
    field[index] = std::strtoull(q, nullptr, 10);
    while (*q != '\0' && *q != ' ') ++q;
    ++index;
  }
  static const long ticks = ::sysconf(_SC_CLK_TCK);
  cpu = static_cast<double>(field[14] + field[15]) / static_cast<double>(ticks > 0 ? ticks : 100);
  start_time = field[22];
  return true;
}

std::int64_t read_rss(pid_t pid) noexcept {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/statm", static_cast<int>(pid));
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  char buf[256];
  const ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return -1;
  buf[n] = '\0';
  unsigned long long size = 0, resident = 0;
  if (std::sscanf(buf, "%llu %llu", &size, &resident) != 2) return -1;
  static const long page = ::sysconf(_SC_PAGESIZE);
  return static_cast<std::int64_t>(resident) * page;
}

process_view view_of(process_record record) {
  process_view v;
  v.record = std::move(record);
  char state = '?';
  double cpu = -1;
  std::uint64_t start = 0;
  const pid_t pid = v.record.pid;
  if (read_proc_stat(pid, state, cpu, start) &&
      (v.record.start_time == 0 || v.record.start_time == start)) {
    v.os_state = state;
    v.alive = state != 'Z' && state != 'X';
    v.cpu_seconds = cpu;
    v.rss_bytes = v.alive ? read_rss(pid) : -1;
  }
  return v;
}

double unix_now() noexcept {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

std::string find_tree_registry(pid_t pid) {
  if (pid <= 0) throw_errno(EINVAL, "no such process");
  const std::string prefix = std::string(resource_registry::name_prefix) + std::to_string(pid) + "-";
  std::vector<std::string> found;
  bool foreign = false;
  if (DIR* dir = ::opendir("/dev/shm")) {
    while (dirent* e = ::readdir(dir)) {
      if (std::strncmp(e->d_name, prefix.c_str(), prefix.size()) != 0) continue;
      struct stat st{};
      const std::string path = std::string("/dev/shm/") + e->d_name;
      if (::lstat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
      if (st.st_uid != ::geteuid()) {
        foreign = true;
        continue;
      }
      found.emplace_back(e->d_name);
    }
    ::closedir(dir);
  }
  // A root that re-rooted leaves a finished registry beside its live one:
  // prefer one that is not finished.
  for (const std::string& name : found) {
    try {
      registry_copy copy(name);
      if (copy.header().owner_pid == pid && copy.header().finished.load(std::memory_order_relaxed) == 0) return name;
    } catch (...) {
    }
  }
  if (!found.empty()) return found.front();
  throw_errno(foreign ? EACCES : ESRCH,
              ("no mphost program of this user with pid " + std::to_string(pid)).c_str());
}

std::vector<pid_t> running_tree_roots() {
  std::vector<pid_t> roots;
  const std::string prefix(resource_registry::name_prefix);
  std::vector<std::string> names;
  if (DIR* dir = ::opendir("/dev/shm")) {
    while (dirent* e = ::readdir(dir)) {
      if (std::strncmp(e->d_name, prefix.c_str(), prefix.size()) == 0) names.emplace_back(e->d_name);
    }
    ::closedir(dir);
  }
  for (const std::string& name : names) {
    try {
      const registry_copy copy(name);
      const registry_header& h = copy.header();
      if (h.finished.load(std::memory_order_relaxed) != 0 || !process_is_alive(h.owner_pid, h.owner_start_time)) continue;
      if (std::find(roots.begin(), roots.end(), h.owner_pid) == roots.end()) roots.push_back(h.owner_pid);
    } catch (...) {
      // another user's, half-made, or gone: not a running program of ours
    }
  }
  std::sort(roots.begin(), roots.end());
  return roots;
}

tree_snapshot take_tree_snapshot(pid_t pid) {
  std::string name;
  if (pid == 0) {
    resource_registry* r = current_registry();
    if (r == nullptr) throw_errno(ENOENT, "this process has no registry (not started by the mphost launcher)");
    name = r->name();
    if (!name.empty() && name.front() == '/') name.erase(0, 1);
  } else {
    name = find_tree_registry(pid);
  }
  const registry_copy copy(name);
  tree_snapshot snap;
  snap.taken_at = unix_now();
  snap.registry = name;
  snap.root = copy.header().owner_pid;
  snap.untracked = copy.header().untracked.load(std::memory_order_relaxed);
  snap.root_alive = process_is_alive(snap.root, copy.header().owner_start_time);
  for (process_record& r : copy.processes()) snap.processes.push_back(view_of(std::move(r)));
  std::sort(snap.processes.begin(), snap.processes.end(), [](const process_view& a, const process_view& b) {
    if (a.record.started_at_ns != b.record.started_at_ns) return a.record.started_at_ns < b.record.started_at_ns;
    return a.record.pid < b.record.pid;
  });
  for (const process_view& p : snap.processes) {
    if (p.record.role == process_role::forkserver && (p.alive || snap.forkserver_pid == 0)) {
      snap.forkserver_pid = p.record.pid;
      snap.forkserver_alive = p.alive;
    }
    if (p.record.role == process_role::warm_spare && p.alive && p.record.state == process_state::ready) ++snap.warm_spares;
  }
  std::vector<pid_t> live;
  for (const process_view& p : snap.processes) {
    if (p.alive) live.push_back(p.record.pid);
  }
  if (snap.root_alive && std::find(live.begin(), live.end(), snap.root) == live.end()) live.push_back(snap.root);
  classify_names(copy.names(), live, snap);
  return snap;
}

}  // namespace mphost::ipc
