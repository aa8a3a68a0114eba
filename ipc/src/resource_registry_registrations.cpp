// The registrations of a resource registry (the resource_tracker API's
// register/unregister): a table of 1024-byte slots after the name slots,
// claimed with compare-and-swap like them (see detail/registry_layout.hpp).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>
#include <system_error>

#include "detail/registry_layout.hpp"
#include "mphost/ipc/process_identity.hpp"
#include "mphost/ipc/resource_registry.hpp"

namespace mphost::ipc {
namespace {

using namespace detail;

// The hash of a registration, type and name kept apart by a zero byte.
std::uint64_t registration_tag(std::string_view rtype, std::string_view name) noexcept {
  std::uint64_t h = hash_bytes(0xcbf29ce484222325ull, rtype);
  h = hash_bytes(h, std::string_view("\0", 1));
  return hash_bytes(h, name) | 1;
}

std::string_view rtype_of(const registration_slot& s) noexcept {
  return {s.text, std::min<std::size_t>(s.rtype_length, resource_registry::max_registration_text)};
}

std::string_view name_of(const registration_slot& s) noexcept {
  const std::size_t skip = std::min<std::size_t>(s.rtype_length, resource_registry::max_registration_text);
  return {s.text + skip, std::min<std::size_t>(s.name_length, resource_registry::max_registration_text - skip)};
}

bool slot_holds(const registration_slot& s, std::string_view rtype, std::string_view name) noexcept {
  return rtype_of(s) == rtype && name_of(s) == name;
}

// Calls fn(slot&, tag) for each slot of the window of `tag`.
template <typename F>
void for_each_in_window(const segment& seg, std::uint64_t tag, F&& fn) {
  registration_slot* table = registration_slots_of(seg);
  const std::size_t count = header_of(seg)->registration_count;
  const std::size_t start = static_cast<std::size_t>(tag >> 1) % count;
  const std::size_t window = std::min(registry_probe_window, count);
  for (std::size_t i = 0; i < window; ++i) {
    if (!fn(table[(start + i) % count], (start + i) % count)) return;
  }
}

template <typename F>
void for_each_registration(const segment& seg, F&& fn) {
  registry_header* h = header_of(seg);
  for_each_touched(h->registration_touched, registration_group_slots, registration_slots_of(seg),
                   h->registration_count, [&](registration_slot& s) {
                     const std::uint64_t tag = s.tag.load(std::memory_order_acquire);
                     if ((tag & 1) != 0) fn(s, tag);
                   });
}

int errno_of(bool ok) noexcept { return ok ? 0 : (errno != 0 ? errno : EINVAL); }

int remove_shared_memory(std::string_view name) noexcept {
  if (!name.empty() && name.front() == '/') name.remove_prefix(1);
  if (!removable_name(name)) return EINVAL;
  errno = 0;
  return errno_of(unlink_name(name));
}

bool absolute_path(std::string_view path) noexcept {
  return path.size() > 1 && path.front() == '/' && path.find('\0') == std::string_view::npos;
}

int remove_file(std::string_view path) noexcept {
  if (!absolute_path(path)) return EINVAL;
  try {
    const std::string p(path);
    return ::unlink(p.c_str()) == 0 ? 0 : errno;
  } catch (...) {
    return ENOMEM;
  }
}

int remove_folder(std::string_view path) noexcept {
  if (!absolute_path(path)) return EINVAL;
  try {
    const std::filesystem::path p{std::string(path)};
    struct stat st{};
    if (::lstat(p.c_str(), &st) != 0) return errno;
    if (!S_ISDIR(st.st_mode)) return ENOTDIR;  // never follow a link to a folder
    std::error_code ec;
    std::filesystem::remove_all(p, ec);
    return ec.value();
  } catch (...) {
    return ENOMEM;
  }
}

}  // namespace

bool resource_registry::add_registration(std::string_view rtype, std::string_view name,
                                         std::uint64_t watcher) noexcept {
  registry_header* h = header_of(segment_);
  if (rtype.empty() || rtype.size() > 255 || rtype.size() + name.size() > max_registration_text) {
    h->untracked.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  const std::uint64_t tag = registration_tag(rtype, name);
  bool present = false;
  for_each_in_window(segment_, tag, [&](registration_slot& s, std::size_t) {
    present = s.tag.load(std::memory_order_acquire) == tag && s.watcher.load(std::memory_order_relaxed) == watcher && slot_holds(s, rtype, name);
    return !present;
  });
  if (present) return true;
  bool added = false;
  for_each_in_window(segment_, tag, [&](registration_slot& s, std::size_t index) {
    // A cheap look first: probing must not dirty pages it does not claim.
    if (s.tag.load(std::memory_order_relaxed) != tag_free) return true;
    mark_touched(h->registration_touched, registration_group_slots, index);
    std::uint64_t expected = tag_free;
    if (!s.tag.compare_exchange_strong(expected, tag_writing, std::memory_order_acquire, std::memory_order_relaxed)) {
      return true;
    }
    s.watcher.store(watcher, std::memory_order_relaxed);
    s.creator = current_pid();
    s.rtype_length = static_cast<std::uint8_t>(rtype.size());
    s.name_length = static_cast<std::uint16_t>(name.size());
    std::memcpy(s.text, rtype.data(), rtype.size());
    std::memcpy(s.text + rtype.size(), name.data(), name.size());
    s.tag.store(tag, std::memory_order_release);
    added = true;
    return false;
  });
  if (!added) h->untracked.fetch_add(1, std::memory_order_relaxed);
  return added;
}

std::size_t resource_registry::drop_registration(std::string_view rtype, std::string_view name) noexcept {
  if (rtype.empty() || rtype.size() + name.size() > max_registration_text) return 0;
  const std::uint64_t tag = registration_tag(rtype, name);
  std::size_t dropped = 0;
  for_each_in_window(segment_, tag, [&](registration_slot& s, std::size_t) {
    std::uint64_t seen = s.tag.load(std::memory_order_acquire);
    if (seen == tag && slot_holds(s, rtype, name) &&
        s.tag.compare_exchange_strong(seen, tag_free, std::memory_order_release, std::memory_order_relaxed)) {
      ++dropped;
    }
    return true;
  });
  return dropped;
}

std::vector<resource_registry::registration> resource_registry::registrations() const {
  std::vector<registration> out;
  for_each_registration(segment_, [&](registration_slot& s, std::uint64_t) {
    out.push_back({std::string(rtype_of(s)), std::string(name_of(s)), s.watcher.load(std::memory_order_relaxed), s.creator});
  });
  return out;
}

std::size_t resource_registry::move_registrations(std::uint64_t from, std::uint64_t to) noexcept {
  std::size_t moved = 0;
  for_each_registration(segment_, [&](registration_slot& s, std::uint64_t) {
    std::uint64_t expected = from;
    if (s.watcher.compare_exchange_strong(expected, to, std::memory_order_relaxed)) ++moved;
  });
  return moved;
}

int remove_registered(std::string_view rtype, std::string_view name) noexcept {
  if (rtype == "shared_memory" || rtype == "semaphore") return remove_shared_memory(name);
  if (rtype == "file") return remove_file(name);
  if (rtype == "folder") return remove_folder(name);
  return EINVAL;
}

namespace detail {

std::size_t remove_registrations(const segment& seg) noexcept {
  std::size_t removed = 0;
  for_each_registration(seg, [&](registration_slot& s, std::uint64_t tag) {
    if (remove_registered(rtype_of(s), name_of(s)) == 0) ++removed;
    s.tag.compare_exchange_strong(tag, tag_free, std::memory_order_release, std::memory_order_relaxed);
  });
  return removed;
}

}  // namespace detail
}  // namespace mphost::ipc
