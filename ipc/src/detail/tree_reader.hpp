#pragma once
// Private: the pieces of the tree snapshot (tree_state.hpp) shared by
// tree_state.cpp (registry, processes) and tree_state_probe.cpp (names).
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "mphost/ipc/tree_state.hpp"

namespace mphost::ipc::detail {

// A file of /dev/shm opened read-only, if it is a regular file of this user;
// read() is pread and returns how many bytes it copied (0 once it is gone).
class read_only_file {
 public:
  explicit read_only_file(const std::string& name) noexcept;
  ~read_only_file();
  read_only_file(const read_only_file&) = delete;
  read_only_file& operator=(const read_only_file&) = delete;

  explicit operator bool() const noexcept { return fd_ >= 0; }
  int error() const noexcept { return error_; }
  std::uint64_t size() const noexcept { return size_; }
  std::size_t read(std::uint64_t offset, void* out, std::size_t length) const noexcept;

 private:
  int fd_ = -1;
  int error_ = 0;
  std::uint64_t size_ = 0;
};

// Sorts the names a registry lists (name, creator pid) into the snapshot's
// channels, syncs and segments; `live` are the pids whose maps are scanned.
void classify_names(const std::vector<std::pair<std::string, pid_t>>& names, const std::vector<pid_t>& live,
                    tree_snapshot& snap);

}  // namespace mphost::ipc::detail
