#include "mphost/runtime/names.hpp"

#include <dirent.h>
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

std::string make_private_directory(const std::string& prefix) {
  const char* base = std::getenv("TMPDIR");
  std::string root = (base != nullptr && *base != '\0') ? base : "/tmp";
  for (int attempt = 0; attempt < 16; ++attempt) {
    std::string path = root + "/" + prefix + random_hex(8);
    if (::mkdir(path.c_str(), 0700) == 0) {
      // mkdir honours the umask, which can only remove bits: 0700 or less.
      return path;
    }
    if (errno != EEXIST) throw_errno("mkdir");
  }
  throw_errno(EEXIST, "mkdir");
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
