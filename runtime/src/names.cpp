#include "mphost/runtime/names.hpp"

#include <dirent.h>
#include <signal.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <vector>

#include "mphost/ipc/error.hpp"

namespace mphost::runtime {

std::string random_hex(std::size_t bytes) {
  std::vector<unsigned char> raw(bytes);
  std::size_t filled = 0;
  while (filled < bytes) {
    const ssize_t n = ::getrandom(raw.data() + filled, bytes - filled, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno("getrandom");
    }
    filled += static_cast<std::size_t>(n);
  }
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes * 2);
  for (unsigned char b : raw) {
    out.push_back(digits[b >> 4]);
    out.push_back(digits[b & 0xf]);
  }
  return out;
}

namespace {

std::string temp_root() {
  const char* base = std::getenv("TMPDIR");
  return (base != nullptr && *base != '\0') ? base : "/tmp";
}

}  // namespace

std::string make_private_directory(const std::string& prefix) {
  const std::string root = temp_root();
  for (int attempt = 0; attempt < 16; ++attempt) {
    std::string path = root + "/" + prefix + std::to_string(::getpid()) + "-" + random_hex(12);
    if (::mkdir(path.c_str(), 0700) == 0) {
      // mkdir honours the umask, which can only remove bits: 0700 or less.
      return path;
    }
    if (errno != EEXIST) throw_errno("mkdir");
  }
  throw_errno(EEXIST, "mkdir");
}

int sweep_orphaned_directories(const std::string& prefix) noexcept {
  int removed = 0;
  const std::string root = temp_root();
  DIR* dir = ::opendir(root.c_str());
  if (dir == nullptr) return 0;
  while (dirent* entry = ::readdir(dir)) {
    const std::string name = entry->d_name;
    if (name.compare(0, prefix.size(), prefix) != 0) continue;
    char* end = nullptr;
    const long pid = std::strtol(name.c_str() + prefix.size(), &end, 10);
    if (pid <= 0 || end == nullptr || *end != '-') continue;
    const std::string path = root + "/" + name;
    struct stat st{};
    if (::lstat(path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != ::geteuid()) continue;
    // Only a creator that is certainly gone: a live (or reused) pid keeps it.
    if (::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;
    remove_private_directory(path);
    ++removed;
  }
  ::closedir(dir);
  return removed;
}

void remove_private_directory(const std::string& path) noexcept {
  if (DIR* dir = ::opendir(path.c_str())) {
    while (dirent* entry = ::readdir(dir)) {
      const std::string name = entry->d_name;
      if (name == "." || name == "..") continue;
      ::unlink((path + "/" + name).c_str());
    }
    ::closedir(dir);
  }
  ::rmdir(path.c_str());
}

}  // namespace mphost::runtime
