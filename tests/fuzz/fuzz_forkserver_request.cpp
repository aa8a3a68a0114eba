// Fuzz target: the forkserver zygote's request parser
// (runtime::receive_forkserver_request, runtime/forkserver.hpp), what a
// client's bytes reach before the zygote forks.
//
// Input: byte 0 says how many descriptors travel with the bytes (0..20,
// beyond forkserver_max_fds too), the rest are the request's bytes, sent on
// one end of a Unix stream socket pair with those descriptors attached; the
// zygote's side reads it as run_zygote does. The token is fixed here, so
// that seeds made with it reach the accepting path. Properties: a request is
// accepted only when its bytes start with "MPFS", the count of descriptors
// that came, and the token (checked here independently); an accepted one
// hands over exactly the descriptors sent; and every descriptor that
// arrived is either handed over or closed (none leaks, whatever the bytes).
#include <dirent.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "fuzz_support.hpp"
#include "mphost/ipc/fd_passing.hpp"
#include "mphost/runtime/forkserver.hpp"

namespace {

const std::string& token() {
  static const std::string t(mphost::runtime::forkserver_token_size, 'k');
  return t;
}

int open_descriptors() {
  int n = 0;
  DIR* d = ::opendir("/proc/self/fd");
  while (::readdir(d) != nullptr) ++n;
  ::closedir(d);
  return n;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* in, std::size_t size) {
  using namespace mphost;
  if (size < 1 || size > 4096) return 0;
  const std::size_t count = in[0] % 21;
  const std::uint8_t* bytes = in + 1;
  const std::size_t length = size - 1;
  const int before = open_descriptors();
  int pair[2];
  fuzz::require(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) == 0, "socketpair");
  std::vector<int> sent;
  for (std::size_t i = 0; i < count; ++i) sent.push_back(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (length > 0) {
    fuzz::require(ipc::send_with_fds(pair[0], bytes, length, sent) == static_cast<ssize_t>(length), "send");
  }
  ipc::close_all(sent);
  ::shutdown(pair[0], SHUT_WR);
  const std::optional<std::vector<int>> got = runtime::receive_forkserver_request(pair[1], token());
  // The zygote reads the header and nothing after it: bytes that follow are
  // never looked at, so they do not make a request invalid.
  const bool well_formed = length >= runtime::forkserver_request_size && std::memcmp(bytes, "MPFS", 4) == 0 &&
                           std::memcmp(bytes + 8, token().data(), token().size()) == 0 && length > 0 &&
                           count <= runtime::forkserver_max_fds && [&] {
                             std::uint32_t declared;
                             std::memcpy(&declared, bytes + 4, 4);
                             return declared == count;
                           }();
  fuzz::require(got.has_value() == well_formed,
                well_formed ? "a valid request was refused" : "a bad request was accepted");
  if (got) {
    fuzz::require(got->size() == count, "an accepted request handed over another number of descriptors");
    ipc::close_all(*got);
  }
  ::close(pair[0]);
  ::close(pair[1]);
  fuzz::require(open_descriptors() == before, "descriptors leaked");
  return 0;
}
