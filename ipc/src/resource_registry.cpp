#include "mphost/ipc/resource_registry.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <system_error>

#include "detail/registry_layout.hpp"
#include "mphost/ipc/error.hpp"

namespace mphost::ipc {
namespace detail {

bool removable_name(std::string_view name) noexcept {
  return !name.empty() && name.size() <= 250 && name != "." && name != ".." &&
         name.find('/') == std::string_view::npos && name.find('\0') == std::string_view::npos;
}

bool unlink_name(std::string_view name) noexcept {
  if (!removable_name(name)) return false;
  std::string path;
  path.reserve(name.size() + 1);
  path.push_back('/');
  path.append(name);
  return ::shm_unlink(path.c_str()) == 0;
}

}  // namespace detail

namespace {

using namespace detail;

std::string_view strip_slash(std::string_view name) noexcept {
  return (!name.empty() && name.front() == '/') ? name.substr(1) : name;
}

name_slot* slots_of(const segment& seg) noexcept { return name_slots_of(seg); }

template <typename F>
void for_each_touched_slot(const segment& seg, F&& fn) {
  registry_header* h = header_of(seg);
  for_each_touched(h->touched, name_group_slots, slots_of(seg), h->slot_count, fn);
}

bool slot_holds(const name_slot& s, std::string_view name) noexcept {
  return s.length == name.size() && std::memcmp(s.name, name.data(), name.size()) == 0;
}

std::atomic<resource_registry*> current{nullptr};

// ---- membership ----
//
// Each member process holds a shared POSIX record lock on its registry,
// through a descriptor of its own. Record locks belong to a process (a fork
// child takes its own again) and the kernel drops them however the process
// ends, so "somebody still holds a read lock" means exactly "a process of
// the tree still runs". Caveat of record locks: a process that closes any
// descriptor of the file loses its lock; no member opens its own registry
// again after joining.
std::atomic<int> member_fd{-1};

std::uint32_t default_registry_slots() noexcept { return resource_registry::default_slot_count; }

bool lock_shared(int fd) noexcept {
  struct flock l{};
  l.l_type = F_RDLCK;
  l.l_whence = SEEK_SET;
  int rc;
  do {
    rc = ::fcntl(fd, F_SETLK, &l);
  } while (rc != 0 && errno == EINTR);
  return rc == 0;
}

// True when a process other than the caller holds a lock on the file.
bool held_by_others(int fd) noexcept {
  struct flock l{};
  l.l_type = F_WRLCK;
  l.l_whence = SEEK_SET;
  // Cannot tell: keep the names, the next sweep looks again.
  if (::fcntl(fd, F_GETLK, &l) != 0) return true;
  return l.l_type != F_UNLCK;
}

int open_registry_file(std::string_view name) noexcept {
  if (!removable_name(name)) return -1;
  std::string path(1, '/');
  path.append(name);
  return ::shm_open(path.c_str(), O_RDWR | O_CLOEXEC, 0);
}

void relock_in_child() noexcept {
  const int fd = member_fd.load(std::memory_order_relaxed);
  if (fd >= 0) lock_shared(fd);
}

void leave_membership() noexcept {
  const int fd = member_fd.exchange(-1, std::memory_order_acq_rel);
  if (fd >= 0) ::close(fd);  // drops this process's lock
}

}  // namespace

resource_registry resource_registry::create(std::uint32_t slot_count, std::string_view prefix,
                                             std::uint32_t registration_count) {
  if (slot_count == 0 || slot_count > name_bitmap_words * 64 * name_group_slots || registration_count == 0 ||
      registration_count > registration_bitmap_words * 64 * registration_group_slots) {
    throw std::system_error(EINVAL, std::system_category(), "registry slot count out of range");
  }
  const std::size_t size = registry_bytes(slot_count, registration_count);
  const std::string base = std::string(prefix) + std::to_string(current_pid()) + "-";
  for (int attempt = 0;; ++attempt) {
    const std::string name = segment::random_name(base);
    const std::string path = "/" + name;
    const int fd = ::shm_open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
      if (errno == EEXIST && attempt < 8) continue;
      throw_errno(("cannot create registry '" + name + "'").c_str());
    }
    // No posix_fallocate: the table stays sparse until slots are written.
    const bool sized = ::fchmod(fd, 0600) == 0 && ::ftruncate(fd, static_cast<off_t>(size)) == 0;
    const int err = errno;
    ::close(fd);
    if (!sized) {
      ::shm_unlink(path.c_str());
      throw_errno(err, ("cannot size registry '" + name + "'").c_str());
    }
    try {
      segment seg = segment::open(name);
      registry_header* h = header_of(seg);
      h->magic = registry_magic;
      h->version = registry_version;
      h->slot_count = slot_count;
      h->registration_count = registration_count;
      h->process_count = default_process_count;
      const process_identity me = process_identity::current();
      h->owner_pid = me.pid;
      h->owner_start_time = me.start_time;
      h->ready.store(1, std::memory_order_release);
      return resource_registry(std::move(seg));
    } catch (...) {
      ::shm_unlink(path.c_str());
      throw;
    }
  }
}

resource_registry resource_registry::open(const std::string& name) {
  segment seg = segment::open(name);
  if (seg.size() < registry_header_bytes) {
    throw std::system_error(EINVAL, std::system_category(), "'" + name + "' is not a registry");
  }
  const registry_header* h = header_of(seg);
  if (h->ready.load(std::memory_order_acquire) != 1 || h->magic != registry_magic || h->version != registry_version ||
      h->slot_count == 0 || h->registration_count == 0 || h->process_count == 0 ||
      h->process_count > process_bitmap_words * 64 * process_group_slots ||
      seg.size() < registry_bytes(h->slot_count, h->registration_count, h->process_count)) {
    throw std::system_error(EINVAL, std::system_category(), "'" + name + "' is not a registry");
  }
  return resource_registry(std::move(seg));
}

process_identity resource_registry::owner() const noexcept {
  const registry_header* h = header_of(segment_);
  return {h->owner_pid, h->owner_start_time};
}

bool resource_registry::owner_is_alive() const noexcept { return process_is_alive(owner()); }

std::uint32_t resource_registry::slot_count() const noexcept { return header_of(segment_)->slot_count; }

std::size_t resource_registry::record(std::string_view name) noexcept {
  name = strip_slash(name);
  registry_header* h = header_of(segment_);
  if (name.empty() || name.size() > max_name_length) {
    h->untracked.fetch_add(1, std::memory_order_relaxed);
    return not_tracked;
  }
  const std::uint64_t tag = name_tag(name);
  const std::size_t count = h->slot_count;
  const std::size_t start = static_cast<std::size_t>(tag >> 1) % count;
  const std::size_t window = std::min(registry_probe_window, count);
  name_slot* table = slots_of(segment_);
  for (std::size_t i = 0; i < window; ++i) {
    const std::size_t index = (start + i) % count;
    name_slot& s = table[index];
    std::uint64_t expected = tag_free;
    // A cheap look first: probing must not dirty pages it does not claim.
    if (s.tag.load(std::memory_order_relaxed) != tag_free) continue;
    // Marked before the slot can be claimed, so no scan misses a live name.
    mark_touched(h->touched, name_group_slots, index);
    if (!s.tag.compare_exchange_strong(expected, tag_writing, std::memory_order_acquire, std::memory_order_relaxed)) continue;
    s.creator = current_pid();
    s.length = static_cast<std::uint16_t>(name.size());
    std::memcpy(s.name, name.data(), name.size());
    s.tag.store(tag, std::memory_order_release);
    return index;
  }
  h->untracked.fetch_add(1, std::memory_order_relaxed);
  return not_tracked;
}

void resource_registry::release_slot(std::size_t index, std::string_view name) noexcept {
  name = strip_slash(name);
  if (index >= slot_count()) return;
  name_slot& s = slots_of(segment_)[index];
  std::uint64_t tag = name_tag(name);
  if (s.tag.load(std::memory_order_acquire) != tag || !slot_holds(s, name)) return;
  s.tag.compare_exchange_strong(tag, tag_free, std::memory_order_release, std::memory_order_relaxed);
}

std::size_t resource_registry::release(std::string_view name) noexcept {
  name = strip_slash(name);
  if (name.empty() || name.size() > max_name_length) return 0;
  const std::uint64_t tag = name_tag(name);
  const std::size_t count = slot_count();
  const std::size_t start = static_cast<std::size_t>(tag >> 1) % count;
  const std::size_t window = std::min(registry_probe_window, count);
  name_slot* table = slots_of(segment_);
  std::size_t released = 0;
  for (std::size_t i = 0; i < window; ++i) {
    name_slot& s = table[(start + i) % count];
    std::uint64_t seen = s.tag.load(std::memory_order_acquire);
    // Two names sharing a 64-bit hash inside one window are not a concern.
    if (seen != tag || !slot_holds(s, name)) continue;
    if (s.tag.compare_exchange_strong(seen, tag_free, std::memory_order_release, std::memory_order_relaxed)) ++released;
  }
  return released;
}

bool resource_registry::contains(std::string_view name) const noexcept {
  name = strip_slash(name);
  if (name.empty() || name.size() > max_name_length) return false;
  const std::uint64_t tag = name_tag(name);
  const std::size_t count = slot_count();
  const std::size_t start = static_cast<std::size_t>(tag >> 1) % count;
  const std::size_t window = std::min(registry_probe_window, count);
  const name_slot* table = slots_of(segment_);
  for (std::size_t i = 0; i < window; ++i) {
    const name_slot& s = table[(start + i) % count];
    if (s.tag.load(std::memory_order_acquire) == tag && slot_holds(s, name)) return true;
  }
  return false;
}

std::vector<std::string> resource_registry::names() const {
  std::vector<std::string> out;
  for_each_touched_slot(segment_, [&](const name_slot& s) {
    if ((s.tag.load(std::memory_order_acquire) & 1) == 0) return;
    out.emplace_back(s.name, std::min<std::size_t>(s.length, max_name_length));
  });
  return out;
}

bool resource_registry::finished() const noexcept {
  return header_of(segment_)->finished.load(std::memory_order_acquire) != 0;
}

void resource_registry::mark_finished() noexcept {
  header_of(segment_)->finished.store(1, std::memory_order_release);
}

std::uint64_t resource_registry::untracked_count() const noexcept {
  return header_of(segment_)->untracked.load(std::memory_order_relaxed);
}

std::size_t resource_registry::remove_all() noexcept {
  if (!segment_) return 0;
  std::size_t removed = 0;
  for_each_touched_slot(segment_, [&](name_slot& s) {
    std::uint64_t tag = s.tag.load(std::memory_order_acquire);
    if ((tag & 1) == 0) return;
    const std::string_view name(s.name, std::min<std::size_t>(s.length, max_name_length));
    if (unlink_name(name)) ++removed;
    s.tag.compare_exchange_strong(tag, tag_free, std::memory_order_release, std::memory_order_relaxed);
  });
  removed += remove_registrations(segment_);
  unlink_name(strip_slash(segment_.name()));
  return removed;
}

// ---- the process-wide current registry ----

resource_registry* current_registry() noexcept { return current.load(std::memory_order_acquire); }

void set_current_registry(resource_registry registry) noexcept {
  resource_registry* fresh = nullptr;
  if (registry) {
    try {
      fresh = new resource_registry(std::move(registry));
    } catch (...) {
      fresh = nullptr;
    }
  }
  leave_membership();
  delete current.exchange(fresh, std::memory_order_acq_rel);
}

bool join_current_registry() noexcept {
  resource_registry* r = current_registry();
  if (r == nullptr) return false;
  if (member_fd.load(std::memory_order_acquire) >= 0) return true;
  static std::once_flag at_fork;
  try {
    std::call_once(at_fork, [] { ::pthread_atfork(nullptr, nullptr, &relock_in_child); });
  } catch (...) {
    return false;
  }
  const int fd = open_registry_file(strip_slash(r->name()));
  if (fd < 0) return false;
  if (!lock_shared(fd)) {
    ::close(fd);
    return false;
  }
  int expected = -1;
  if (!member_fd.compare_exchange_strong(expected, fd, std::memory_order_acq_rel)) ::close(fd);
  return true;
}

bool others_attached_to_current_registry() noexcept {
  const int fd = member_fd.load(std::memory_order_acquire);
  if (fd >= 0) return held_by_others(fd);
  resource_registry* r = current_registry();
  if (r == nullptr) return false;
  const int probe = open_registry_file(strip_slash(r->name()));
  if (probe < 0) return false;
  const bool others = held_by_others(probe);
  ::close(probe);
  return others;
}

bool start_root_registry() noexcept {
  sweep_dead_registries();
  try {
    resource_registry registry = resource_registry::create();
    if (::setenv(resource_registry::environment_variable, registry.name().c_str(), 1) != 0) {
      registry.remove_all();
      return false;
    }
    set_current_registry(std::move(registry));
    join_current_registry();
    return true;
  } catch (...) {
    return false;
  }
}

bool attach_registry_from_environment(bool member) noexcept {
  const char* name = std::getenv(resource_registry::environment_variable);
  if (name == nullptr || *name == '\0') return false;
  try {
    resource_registry registry = resource_registry::open(name);
    if (!registry.owner_is_alive()) return false;
    set_current_registry(std::move(registry));
    if (member) join_current_registry();
    return true;
  } catch (...) {
    return false;
  }
}

void finish_root_registry() noexcept {
  resource_registry* r = current_registry();
  if (r == nullptr || r->owner().pid != current_pid()) return;
  // Marked first: a process of the tree that outlives us and creates a name
  // from now on records it in a registry of its own (registry_for_new_name).
  r->mark_finished();
  r->remove_all();
  set_current_registry(resource_registry());
}

int registry_member_token() noexcept {
  resource_registry* r = current_registry();
  if (r == nullptr) return -1;
  const int fd = open_registry_file(strip_slash(r->name()));
  if (fd < 0) return -1;
  struct flock l{};
  l.l_type = F_RDLCK;
  l.l_whence = SEEK_SET;
  int rc;
  do {
    rc = ::fcntl(fd, F_OFD_SETLK, &l);
  } while (rc != 0 && errno == EINTR);
  // Without the lock it is still returned: closing it here would drop this
  // process's own record lock.
  return fd;
}

bool adopt_registry(const std::string& name) noexcept {
  resource_registry* r = current_registry();
  if (r != nullptr && strip_slash(r->name()) == strip_slash(name)) return true;
  try {
    resource_registry registry = resource_registry::open(name);
    // A registry this process made for itself because the tree's owner was
    // already dead when it started goes first.
    finish_root_registry();
    if (::setenv(resource_registry::environment_variable, registry.name().c_str(), 1) != 0) return false;
    set_current_registry(std::move(registry));
    return true;
  } catch (...) {
    return false;
  }
}

bool finish_abandoned_registry() noexcept {
  resource_registry* r = current_registry();
  if (r == nullptr || r->owner_is_alive() || others_attached_to_current_registry()) return false;
  r->mark_finished();
  r->remove_all();
  set_current_registry(resource_registry());
  return true;
}

resource_registry* registry_for_new_name() noexcept {
  resource_registry* r = current_registry();
  if (r == nullptr || !r->finished()) return r;
  // The root has ended and this process still runs (an orphan of a killed
  // child, a helper that outlives the root): it becomes the root of what it
  // creates from now on, named like the registry it leaves.
  static std::mutex rerooting;
  std::lock_guard lock(rerooting);
  r = current_registry();
  if (r == nullptr || !r->finished()) return r;  // another thread did it
  std::string prefix(r->name());
  const auto cut = prefix.rfind('-');
  if (cut != std::string::npos) prefix.erase(cut);
  while (!prefix.empty() && prefix.back() >= '0' && prefix.back() <= '9') prefix.pop_back();
  if (prefix.empty() || prefix.front() == '/') prefix = std::string(resource_registry::name_prefix);
  resource_registry* fresh = nullptr;
  try {
    fresh = new resource_registry(resource_registry::create(default_registry_slots(), prefix));
    ::setenv(resource_registry::environment_variable, fresh->name().c_str(), 1);
  } catch (...) {
    delete fresh;
    fresh = nullptr;
  }
  // The finished registry is not deleted: other threads of this process may
  // be inside it right now (a small object and a mapping, kept once).
  leave_membership();
  current.store(fresh, std::memory_order_release);
  if (fresh != nullptr) join_current_registry();
  return fresh;
}

std::size_t sweep_dead_registries(std::string_view prefix) noexcept {
  std::vector<std::string> candidates;
  try {
    if (DIR* dir = ::opendir("/dev/shm")) {
      while (dirent* e = ::readdir(dir)) {
        if (std::strncmp(e->d_name, prefix.data(), prefix.size()) == 0) candidates.emplace_back(e->d_name);
      }
      ::closedir(dir);
    }
  } catch (...) {
    return 0;
  }
  std::size_t swept = 0;
  for (const std::string& name : candidates) {
    char* end = nullptr;
    const long pid = std::strtol(name.c_str() + prefix.size(), &end, 10);
    if (pid <= 0 || end == nullptr || *end != '-') continue;
    struct stat st{};
    if (::lstat(("/dev/shm/" + name).c_str(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != ::geteuid()) continue;
    try {
      resource_registry registry = resource_registry::open(name);
      if (registry.owner().pid != pid || registry.owner_is_alive()) continue;
      // The root is gone but processes of its tree still run.
      const int probe = open_registry_file(name);
      if (probe < 0) continue;
      const bool others = held_by_others(probe);
      ::close(probe);
      if (others) continue;
      registry.remove_all();
      ++swept;
    } catch (const std::system_error& e) {
      // Not (yet) a complete registry: its creator may still be writing the
      // header. Only a creator that is gone lets us remove it.
      if (e.code() == std::errc::invalid_argument && !process_is_alive(static_cast<pid_t>(pid))) {
        if (unlink_name(name)) ++swept;
      }
    } catch (...) {
    }
  }
  return swept;
}

}  // namespace mphost::ipc
