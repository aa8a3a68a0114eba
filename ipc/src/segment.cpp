#include "mphost/ipc/segment.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/interprocess/exceptions.hpp>
#include <boost/interprocess/mapped_region.hpp>
#include <boost/interprocess/permissions.hpp>
#include <boost/interprocess/shared_memory_object.hpp>
#include <cerrno>
#include <system_error>

#include "mphost/ipc/error.hpp"
#include "mphost/ipc/resource_registry.hpp"

namespace bip = boost::interprocess;

namespace mphost::ipc {

struct segment::mapping {
  bip::mapped_region region;
};

namespace {

// Boost reports errors as interprocess_exception; the core speaks
// std::system_error. The native error is errno when Boost has one.
[[noreturn]] void rethrow_as_system_error(const bip::interprocess_exception& e, const char* what) {
  int err = e.get_native_error();
  if (err == 0) {
    switch (e.get_error_code()) {
      case bip::already_exists_error: err = EEXIST; break;
      case bip::not_found_error: err = ENOENT; break;
      case bip::security_error: err = EACCES; break;
      case bip::out_of_space_error: err = ENOSPC; break;
      case bip::out_of_memory_error: err = ENOMEM; break;
      case bip::size_error: err = EINVAL; break;
      case bip::path_error: err = EINVAL; break;
      case bip::busy_error: err = EBUSY; break;
      default: err = EIO; break;
    }
  }
  throw std::system_error(err, std::system_category(), what);
}

void check_name(const std::string& name) {
  // shm_open names: one component, at most NAME_MAX, optional leading '/'.
  const std::size_t start = (!name.empty() && name[0] == '/') ? 1 : 0;
  if (name.size() == start || name.size() - start > 250 || name.find('/', start) != std::string::npos) {
    throw std::system_error(EINVAL, std::system_category(), "invalid shared memory name '" + name + "'");
  }
}

void fill_random(unsigned char* out, std::size_t n) {
  std::size_t filled = 0;
  while (filled < n) {
    const ssize_t got = ::getrandom(out + filled, n - filled, 0);
    if (got < 0) {
      if (errno == EINTR) continue;
      throw_errno("getrandom");
    }
    filled += static_cast<std::size_t>(got);
  }
}

}  // namespace

std::string segment::random_name(std::string_view prefix) {
  unsigned char raw[12];
  fill_random(raw, sizeof raw);
  static constexpr char digits[] = "0123456789abcdef";
  std::string out(prefix);
  for (unsigned char b : raw) {
    out.push_back(digits[b >> 4]);
    out.push_back(digits[b & 0xf]);
  }
  return out;
}

segment::segment() noexcept = default;
segment::segment(std::string name, std::unique_ptr<mapping> map) noexcept
    : name_(std::move(name)), map_(std::move(map)), base_(map_->region.get_address()), size_(map_->region.get_size()) {}
segment::segment(segment&& other) noexcept
    : name_(std::move(other.name_)), map_(std::move(other.map_)), base_(other.base_), size_(other.size_) {
  other.base_ = nullptr;
  other.size_ = 0;
}
segment& segment::operator=(segment&& other) noexcept {
  if (this != &other) {
    reset();
    name_ = std::move(other.name_);
    map_ = std::move(other.map_);
    base_ = other.base_;
    size_ = other.size_;
    other.base_ = nullptr;
    other.size_ = 0;
  }
  return *this;
}
segment::~segment() = default;

void segment::reset() noexcept {
  map_.reset();
  base_ = nullptr;
  size_ = 0;
}

segment segment::create_named(const std::string& name, std::size_t size, std::size_t allocate) {
  check_name(name);
  if (size == 0) throw std::system_error(EINVAL, std::system_category(), "shared memory size is zero");
  const auto make = [&]() -> segment {
    try {
      bip::permissions perms;
      perms.set_permissions(0600);
      bip::shared_memory_object shm(bip::create_only, name.c_str(), bip::read_write, perms);
      try {
        shm.truncate(static_cast<bip::offset_t>(size));
        // Allocate every page now: tmpfs would otherwise allocate on first
        // touch and a full /dev/shm would kill the toucher with SIGBUS.
        const int fd = shm.get_mapping_handle().handle;
        int rc;
        do {
          rc = ::posix_fallocate(fd, 0, static_cast<off_t>(allocate < size ? allocate : size));
        } while (rc == EINTR);
        if (rc != 0 && rc != EOPNOTSUPP && rc != ENOSYS) throw std::system_error(rc, std::system_category(), "posix_fallocate");
        auto map = std::make_unique<mapping>(mapping{bip::mapped_region(shm, bip::read_write)});
        return segment(name, std::move(map));
      } catch (...) {
        bip::shared_memory_object::remove(name.c_str());
        throw;
      }
    } catch (const bip::interprocess_exception& e) {
      rethrow_as_system_error(e, ("cannot create shared memory '" + name + "'").c_str());
    }
  };
  // The name is recorded before it exists, so no instant passes in which a
  // killed creator would leave an unrecorded name behind.
  resource_registry* registry = registry_for_new_name();
  if (registry == nullptr) return make();
  const std::size_t slot = registry->record(name);
  try {
    return make();
  } catch (...) {
    if (slot != resource_registry::not_tracked) registry->release_slot(slot, name);
    throw;
  }
}

segment segment::create(std::size_t size, std::string_view prefix, std::size_t allocate) {
  for (int attempt = 0;; ++attempt) {
    try {
      return create_named(random_name(prefix), size, allocate);
    } catch (const std::system_error& e) {
      // 96 random bits make a collision all but impossible; retry anyway.
      if (e.code() != std::errc::file_exists || attempt >= 8) throw;
    }
  }
}

segment segment::open(const std::string& name) {
  check_name(name);
  try {
    bip::shared_memory_object shm(bip::open_only, name.c_str(), bip::read_write);
    struct stat st{};
    if (::fstat(shm.get_mapping_handle().handle, &st) != 0) throw_errno("fstat");
    if (st.st_uid != ::geteuid()) {
      throw std::system_error(EACCES, std::system_category(), "shared memory '" + name + "' belongs to another user");
    }
    if (st.st_size <= 0) {
      throw std::system_error(EINVAL, std::system_category(), "shared memory '" + name + "' is empty");
    }
    auto map = std::make_unique<mapping>(mapping{bip::mapped_region(shm, bip::read_write)});
    return segment(name, std::move(map));
  } catch (const bip::interprocess_exception& e) {
    rethrow_as_system_error(e, ("cannot open shared memory '" + name + "'").c_str());
  }
}

bool segment::populate(std::size_t offset, std::size_t length) const noexcept {
  if (base_ == nullptr || offset >= size_) return false;
  if (length > size_ - offset) length = size_ - offset;
  const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  const std::size_t first = offset & ~(page - 1);
  const std::size_t end = (offset + length + page - 1) & ~(page - 1);
  int rc;
  do {
    rc = ::madvise(data() + first, (end < size_ ? end : size_) - first, MADV_POPULATE_WRITE);
  } while (rc != 0 && errno == EINTR);
  // EINVAL: a kernel without MADV_POPULATE_WRITE (before 5.14); the first
  // touch allocates then.
  return rc == 0 || errno == EINVAL;
}

bool segment::remove(const std::string& name) noexcept {
  if (name.empty()) return false;
  bool removed = false;
  try {
    removed = bip::shared_memory_object::remove(name.c_str());
  } catch (...) {
    removed = false;
  }
  // Released after the name is gone: a process killed in between leaves a
  // record of a missing name, which costs nothing.
  if (resource_registry* registry = current_registry()) registry->release(name);
  return removed;
}

}  // namespace mphost::ipc
