#include "mphost/runtime/forkserver.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>

#include "mphost/ipc/error.hpp"
#include "mphost/ipc/fd_passing.hpp"
#include "mphost/ipc/process_table.hpp"
#include "mphost/runtime/exit_status.hpp"
#include "mphost/runtime/handshake.hpp"
#include "mphost/runtime/names.hpp"
#include "mphost/runtime/sentinel.hpp"

namespace mphost::runtime {
namespace {

constexpr char magic[4] = {'M', 'P', 'F', 'S'};
constexpr std::size_t header_size = sizeof magic + 4 + forkserver_token_size;
static_assert(header_size == forkserver_request_size);

sockaddr_un socket_address(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) throw_errno(ENAMETOOLONG, "forkserver socket path");
  std::memcpy(addr.sun_path, path.data(), path.size());
  return addr;
}

bool equal_in_constant_time(const char* a, const char* b, std::size_t n) noexcept {
  unsigned char diff = 0;
  for (std::size_t i = 0; i < n; ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

using ipc::close_all;

}  // namespace

bool forkserver_request_valid(std::span<const char> header, bool truncated, std::size_t fd_count,
                              const std::string& token) noexcept {
  if (header.size() != forkserver_request_size || truncated || token.size() != forkserver_token_size ||
      std::memcmp(header.data(), magic, sizeof magic) != 0) {
    return false;
  }
  std::uint32_t declared = 0;
  std::memcpy(&declared, header.data() + sizeof magic, 4);
  return declared == fd_count &&
         equal_in_constant_time(header.data() + sizeof magic + 4, token.data(), forkserver_token_size);
}

std::optional<std::vector<int>> receive_forkserver_request(int conn, const std::string& token) {
  char header[header_size];
  ipc::received_with_fds got = ipc::receive_with_fds(conn, header, sizeof header, forkserver_max_fds);
  const std::size_t bytes = got.bytes < 0 ? 0 : static_cast<std::size_t>(got.bytes);
  if (got.bytes < 0 ||
      !forkserver_request_valid(std::span<const char>(header, bytes), got.truncated, got.fds.size(), token)) {
    close_all(got.fds);
    return std::nullopt;
  }
  return std::move(got.fds);
}

namespace {

bool send_quietly(int fd, const void* data, std::size_t size) noexcept {
  const auto* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t n = ::send(fd, p, size, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += n;
    size -= static_cast<std::size_t>(n);
  }
  return true;
}

struct running_child {
  int pidfd;
  int conn;
  bool reported;  // exit code sent; now waiting for the client to let go
};

// The exit code of an ended child, read without reaping it (WNOWAIT): the
// child stays a zombie, its pid reserved, until its client lets go, as a
// forked child stays until its parent reaps it.
std::int32_t peek_exit_code(pid_t pid) noexcept {
  siginfo_t info{};
  int rc;
  do {
    rc = ::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOWAIT);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) return 255;
  if (info.si_code == CLD_EXITED) return info.si_status;
  return -info.si_status;  // CLD_KILLED, CLD_DUMPED
}

void release_child(pid_t pid, const running_child& child) noexcept {
  ::close(child.conn);
  ::close(child.pidfd);
  int status;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
}

}  // namespace

forkserver_listener open_forkserver_listener() {
  forkserver_listener listener;
  listener.directory = make_private_directory("mphost-fs-");
  listener.path = listener.directory + "/forkserver.sock";
  try {
    listener.fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listener.fd < 0) throw_errno("socket");
    const sockaddr_un addr = socket_address(listener.path);
    if (::bind(listener.fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) throw_errno("bind");
    ::chmod(listener.path.c_str(), 0600);
    if (::listen(listener.fd, 128) != 0) throw_errno("listen");
  } catch (...) {
    if (listener.fd >= 0) ::close(listener.fd);
    remove_private_directory(listener.directory);
    throw;
  }
  return listener;
}

std::string new_forkserver_token() { return random_hex(forkserver_token_size / 2); }

std::optional<std::vector<int>> run_zygote(int listen_fd, int alive_fd, const std::string& token,
                                           const fork_hooks& hooks) {
  std::map<pid_t, running_child> children;
  std::vector<pid_t> watched;  // the pid behind each pollfd from index 2 on
  ipc::note_this_process(ipc::process_role::forkserver, "ForkServer", ipc::process_method::spawn);
  for (;;) {
    std::vector<pollfd> watch;
    watch.push_back({alive_fd, POLLIN, 0});
    watch.push_back({listen_fd, POLLIN, 0});
    watched.clear();
    for (const auto& [pid, child] : children) {
      // A running child is watched through its pidfd; a reported one through
      // its client's connection, which reads end of file once the client is done.
      watch.push_back({child.reported ? child.conn : child.pidfd, POLLIN, 0});
      watched.push_back(pid);
    }
    if (::poll(watch.data(), watch.size(), -1) < 0) {
      if (errno == EINTR) continue;
      throw_errno("poll");
    }
    if (watch[0].revents != 0) {
      char byte;
      const ssize_t n = ::read(alive_fd, &byte, 1);
      if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) {
        for (const auto& [pid, child] : children) {
          if (child.reported) {
            release_child(pid, child);
          } else {
            ::close(child.pidfd);
            ::close(child.conn);
          }
        }
        return std::nullopt;
      }
    }
    for (std::size_t i = 2; i < watch.size(); ++i) {
      if (watch[i].revents == 0) continue;
      const pid_t pid = watched[i - 2];
      running_child& child = children.at(pid);
      if (!child.reported) {
        const std::int32_t wire = peek_exit_code(pid);
        child.reported = true;
        if (!send_quietly(child.conn, &wire, sizeof wire)) {
          release_child(pid, child);
          children.erase(pid);
        }
        continue;
      }
      char byte;
      const ssize_t n = ::recv(child.conn, &byte, 1, MSG_DONTWAIT);
      if (n > 0 || (n < 0 && (errno == EAGAIN || errno == EINTR))) continue;  // not closed yet
      release_child(pid, child);
      children.erase(pid);
    }
    if (watch[1].revents == 0) continue;
    const int conn = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (conn < 0) continue;  // EINTR, ECONNABORTED, EMFILE...: try again on the next round
    // A client that connects and then says nothing must not stall the zygote.
    const timeval limit{5, 0};
    ::setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
    std::optional<std::vector<int>> fds = receive_forkserver_request(conn, token);
    if (!fds) {
      ::close(conn);
      continue;
    }
    pid_t pid;
    try {
      pid = fork_process(hooks);
    } catch (const std::system_error&) {
      close_all(*fds);
      ::close(conn);
      continue;
    }
    if (pid == 0) {
      ::close(listen_fd);
      ::close(alive_fd);
      ::close(conn);
      for (const auto& [other, child] : children) {
        ::close(child.pidfd);
        ::close(child.conn);
      }
      return fds;
    }
    close_all(*fds);
    const std::int64_t wire_pid = pid;
    send_quietly(conn, &wire_pid, sizeof wire_pid);
    int pidfd = -1;
    try {
      pidfd = open_process_sentinel(pid);
    } catch (const std::system_error&) {
      // Without a pidfd, wait for this child now so that its client still gets a status.
      const std::int32_t wire = wait_for_exit(pid, true).value_or(255);
      send_quietly(conn, &wire, sizeof wire);
      ::close(conn);
      continue;
    }
    children.emplace(pid, running_child{pidfd, conn, false});
  }
}

forked_child request_fork(const std::string& socket_path, const std::string& token,
                          std::span<const int> fds) {
  if (fds.size() > forkserver_max_fds) throw_errno(EINVAL, "too many descriptors for the forkserver");
  if (token.size() != forkserver_token_size) throw std::system_error(errc::auth_failed, "bad forkserver token");
  const int conn = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (conn < 0) throw_errno("socket");
  try {
    const sockaddr_un addr = socket_address(socket_path);
    int rc;
    do {
      rc = ::connect(conn, reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
    } while (rc != 0 && errno == EINTR);
    if (rc != 0) throw_errno("connect to forkserver");
    char header[header_size];
    std::memcpy(header, magic, sizeof magic);
    const std::uint32_t count = static_cast<std::uint32_t>(fds.size());
    std::memcpy(header + sizeof magic, &count, 4);
    std::memcpy(header + sizeof magic + 4, token.data(), forkserver_token_size);
    const ssize_t n = ipc::send_with_fds(conn, header, sizeof header, fds);
    if (n != static_cast<ssize_t>(header_size)) throw_errno(n < 0 ? errno : EIO, "send to forkserver");
    std::int64_t pid = -1;
    if (!read_all(conn, &pid, sizeof pid)) {
      throw std::system_error(errc::auth_failed, "the forkserver refused the request");
    }
    return {static_cast<pid_t>(pid), conn};
  } catch (...) {
    ::close(conn);
    throw;
  }
}

std::optional<int> read_child_exit_code(int status_fd) {
  std::int32_t code = 0;
  try {
    if (!read_all(status_fd, &code, sizeof code)) return std::nullopt;
  } catch (const std::system_error& e) {
    if (e.code() == errc::peer_closed) return std::nullopt;
    throw;
  }
  // Collected: the zygote may reap the child now. It closes the connection
  // in turn, which leaves the descriptor readable for good, as a sentinel of
  // an ended process should be.
  ::shutdown(status_fd, SHUT_WR);
  return code;
}

}  // namespace mphost::runtime
