// What each name of a tree's registry is (tree_state.hpp): a copy of its
// first bytes, read with pread, matched against the headers the core
// writes; plain segments get the pids that map them from /proc/<pid>/maps.
#include <fcntl.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <memory>
#include <set>
#include <unordered_map>

#include "detail/channel_layout.hpp"
#include "detail/state_probe.hpp"
#include "detail/tree_reader.hpp"
#include "mphost/ipc/resource_registry.hpp"
#include "mphost/ipc/segment.hpp"

namespace mphost::ipc {
namespace detail {
namespace {

struct alignas(64) probe_buffer {
  std::byte bytes[probe_bytes];
};
static_assert(sizeof(control) <= probe_bytes);

// Where a /dev/shm name is mapped in the tree: by which pids, and one
// mapping of its first page to read it through when its name is gone (a
// fork-context semaphore is unlinked as soon as it is made).
struct mapping_info {
  std::vector<pid_t> pids;
  pid_t via_pid = 0;  // a process mapping it from offset 0
  std::uint64_t address = 0;
  std::uint64_t length = 0;
  bool deleted = false;
};

// The /dev/shm mappings of the processes `live`, by name.
std::unordered_map<std::string, mapping_info> shm_mappings(const std::vector<pid_t>& live) {
  std::unordered_map<std::string, mapping_info> out;
  constexpr std::string_view marker = "/dev/shm/";
  constexpr std::string_view deleted = " (deleted)";
  std::string text;
  char chunk[16384];
  for (pid_t pid : live) {
    const std::string path = "/proc/" + std::to_string(pid) + "/maps";
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    text.clear();
    for (;;) {
      const ssize_t n = ::read(fd, chunk, sizeof chunk);
      if (n <= 0) break;
      text.append(chunk, static_cast<std::size_t>(n));
    }
    ::close(fd);
    std::size_t line_start = 0;
    while (line_start < text.size()) {
      std::size_t line_end = text.find('\n', line_start);
      if (line_end == std::string::npos) line_end = text.size();
      const std::string_view line(text.data() + line_start, line_end - line_start);
      line_start = line_end + 1;
      const std::size_t at = line.find(marker);
      if (at == std::string_view::npos) continue;
      std::string_view name = line.substr(at + marker.size());
      const bool gone = name.size() > deleted.size() && name.substr(name.size() - deleted.size()) == deleted;
      if (gone) name.remove_suffix(deleted.size());
      unsigned long long from = 0, to = 0, offset = 0;
      const std::string head(line.substr(0, at));
      if (std::sscanf(head.c_str(), "%llx-%llx %*s %llx", &from, &to, &offset) != 3) continue;
      mapping_info& info = out[std::string(name)];
      if (std::find(info.pids.begin(), info.pids.end(), pid) == info.pids.end()) info.pids.push_back(pid);
      info.deleted = info.deleted || gone;
      if (offset == 0 && info.via_pid == 0) {
        info.via_pid = pid;
        info.address = from;
        info.length = to - from;
      }
    }
  }
  return out;
}

// The first bytes of a mapping whose name is gone, copied from the memory of
// a process that maps it (/proc/<pid>/mem: a read, no ptrace stop).
std::size_t read_mapped(const mapping_info& info, std::byte* out, std::size_t length) noexcept {
  if (info.via_pid <= 0) return 0;
  const std::string path = "/proc/" + std::to_string(info.via_pid) + "/mem";
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  const std::size_t want = std::min<std::uint64_t>(length, info.length);
  const ssize_t n = ::pread(fd, out, want, static_cast<off_t>(info.address));
  ::close(fd);
  return n > 0 ? static_cast<std::size_t>(n) : 0;
}

struct ring_numbers {
  std::uint64_t capacity, head, tail;
};

ring_numbers numbers_of(const ring_header& h) noexcept {
  return {h.capacity, h.head.load(std::memory_order_relaxed), h.tail.load(std::memory_order_relaxed)};
}

std::optional<ring_numbers> read_ring(const std::string& channel, std::uint64_t id) {
  read_only_file f(channel + ".r" + std::to_string(id));
  alignas(64) std::byte bytes[sizeof(ring_header)];
  if (!f || f.read(0, bytes, sizeof bytes) != sizeof bytes) return std::nullopt;
  const auto* h = reinterpret_cast<const ring_header*>(bytes);
  if (h->magic != ring_magic) return std::nullopt;
  return numbers_of(*h);
}

bool describe_channel(const std::string& name, const std::byte* bytes, std::size_t size, channel_view& out) {
  if (size < sizeof(control)) return false;
  const auto* c = reinterpret_cast<const control*>(bytes);
  if (c->magic != control_magic || c->version != layout_version) return false;
  out.name = name;
  out.unbounded = (c->flags & flag_unbounded) != 0;
  out.label.assign(c->label, ::strnlen(c->label, sizeof c->label));
  out.readers_waiting = c->readers_waiting.load(std::memory_order_relaxed);
  out.writers_waiting = c->writers_waiting.load(std::memory_order_relaxed);
  out.readers = c->live_readers.load(std::memory_order_relaxed);
  out.writers = c->live_writers.load(std::memory_order_relaxed);
  const std::uint64_t written = c->messages_written.load(std::memory_order_relaxed);
  const std::uint64_t taken = c->messages_read.load(std::memory_order_relaxed);
  out.messages_total = written;
  out.depth = written > taken ? written - taken : 0;
  const std::uint64_t head_ring = c->head_ring.load(std::memory_order_relaxed);
  const std::uint64_t tail_ring = c->tail_ring.load(std::memory_order_relaxed);
  out.capacity = c->ring0.capacity;
  // The rings between the one read and the one written (at most a few: each
  // is twice the previous); a ring gone meanwhile counts for nothing.
  for (std::uint64_t id = head_ring; id <= tail_ring && id < head_ring + 64; ++id) {
    const std::optional<ring_numbers> h = id == 0 ? std::optional<ring_numbers>(numbers_of(c->ring0)) : read_ring(name, id);
    if (!h) continue;
    const std::uint64_t head = h->head;
    const std::uint64_t tail = h->tail;
    if (tail >= head && tail - head <= h->capacity) out.bytes_in_flight += tail - head;
    if (id == tail_ring) out.capacity = h->capacity;
  }
  return true;
}

bool describe_sync(const std::byte* bytes, std::size_t size, sync_view& out) noexcept {
  return describe_semlock(bytes, size, out) || describe_event(bytes, size, out) ||
         describe_condition(bytes, size, out) || describe_barrier(bytes, size, out);
}

}  // namespace

void classify_names(const std::vector<std::pair<std::string, pid_t>>& names, const std::vector<pid_t>& live,
                    tree_snapshot& snap) {
  const auto mappings = shm_mappings(live);
  // What the registry lists, then what the tree maps and the registry does
  // not (names already unlinked, shared memory made outside the core).
  std::vector<std::pair<std::string, pid_t>> all(names);
  std::set<std::string> listed;
  for (const auto& entry : names) listed.insert(entry.first);
  for (const auto& [name, info] : mappings) {
    if (listed.insert(name).second) all.emplace_back(name, 0);
  }
  auto buffer = std::make_unique<probe_buffer>();
  for (const auto& [name, creator] : all) {
    if (name.rfind(resource_registry::name_prefix, 0) == 0 || name.empty()) continue;
    // A channel's extra rings and large blocks are part of it.
    if (const auto dot = name.rfind('.'); dot != std::string::npos && listed.count(name.substr(0, dot)) != 0) continue;
    const auto mapped = mappings.find(name);
    std::uint64_t size = 0;
    std::size_t got = 0;
    std::memset(buffer->bytes, 0, sizeof buffer->bytes);
    {
      read_only_file file(name);
      if (file) {
        size = file.size();
        got = file.read(0, buffer->bytes, std::min<std::uint64_t>(size, sizeof buffer->bytes));
      } else if (mapped != mappings.end()) {
        size = mapped->second.length;
        got = read_mapped(mapped->second, buffer->bytes, sizeof buffer->bytes);
      } else {
        continue;  // gone since the registry listed it
      }
    }
    channel_view channel;
    channel.creator_pid = creator;
    if (describe_channel(name, buffer->bytes, got, channel)) {
      snap.channels.push_back(std::move(channel));
      continue;
    }
    sync_view sync;
    if (describe_sync(buffer->bytes, got, sync)) {
      sync.name = name;
      sync.creator_pid = creator;
      snap.syncs.push_back(std::move(sync));
      continue;
    }
    segment_view seg;
    seg.name = name;
    seg.size = size;
    seg.creator_pid = creator;
    if (mapped != mappings.end()) seg.mapped_by = mapped->second.pids;
    snap.segments.push_back(std::move(seg));
  }
  auto by_name = [](const auto& a, const auto& b) { return a.name < b.name; };
  std::sort(snap.channels.begin(), snap.channels.end(), by_name);
  std::sort(snap.syncs.begin(), snap.syncs.end(), by_name);
  std::sort(snap.segments.begin(), snap.segments.end(), by_name);
}

}  // namespace detail

bool label_channel(const std::string& name, std::string_view label) noexcept {
  try {
    segment seg = segment::open(name);
    if (seg.size() < sizeof(detail::control)) return false;
    auto* c = static_cast<detail::control*>(seg.base());
    if (c->magic != detail::control_magic || c->version != detail::layout_version) return false;
    char text[sizeof c->label] = {};
    std::memcpy(text, label.data(), std::min(label.size(), sizeof text - 1));
    std::memcpy(c->label, text, sizeof text);
    return true;
  } catch (...) {
    return false;
  }
}

}  // namespace mphost::ipc
