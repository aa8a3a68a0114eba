#pragma once
// The forkserver zygote and its clients.
//
// One zygote per program forks clean children on request. It listens on a
// Unix socket inside a private 0700 directory (never the abstract namespace).
// A request is accepted only when it carries the program's secret token,
// compared in constant time; requests that fail are closed unanswered.
//
// Wire protocol on one connection, client -> zygote: a header
//   "MPFS" | u32 fd count | token bytes (token_size)
// sent with the descriptors as SCM_RIGHTS; zygote -> client: the child's pid
// as i64, and later, when the child has ended, its exit code as i32
// (0, n or -signum). The connection itself is the child's sentinel on the
// client side: it becomes readable when the exit code is there. The zygote
// reads the exit code without reaping: the ended child stays a zombie, its
// pid reserved (so signalling it is harmless, as for a forked child not yet
// joined), until the client has read the exit code or closed the connection.

#include <sys/types.h>

#include <optional>
#include <span>
#include <string>
#include <vector>

#include "mphost/runtime/fork.hpp"

namespace mphost::runtime {

inline constexpr std::size_t forkserver_token_size = 64;
inline constexpr std::size_t forkserver_max_fds = 16;
// Bytes of a request header: "MPFS", the u32 fd count, the token.
inline constexpr std::size_t forkserver_request_size = 4 + 4 + forkserver_token_size;

struct forkserver_listener {
  int fd = -1;            // listening socket, close-on-exec
  std::string directory;  // private 0700 directory holding the socket
  std::string path;       // socket path inside it
};

// Creates the private directory and a listening socket in it.
forkserver_listener open_forkserver_listener();

// A fresh secret for a zygote (forkserver_token_size hex characters).
std::string new_forkserver_token();

// The zygote's loop. Serves requests until `alive_fd` reports end-of-file
// (the program closed its end), then returns nullopt in the zygote. When it
// forks a child, it returns in that child the descriptors the client sent,
// with the zygote's own descriptors already closed. The hooks wrap each fork
// (embed/ runs the interpreter's fork protocol in them).
std::optional<std::vector<int>> run_zygote(int listen_fd, int alive_fd, const std::string& token,
                                           const fork_hooks& hooks);

// The zygote's check of a request, apart from its I/O so that it can be
// tested and fuzzed alone: `header` is every byte received (at most
// forkserver_request_size are read), `truncated` says more descriptors came
// than forkserver_max_fds, `fd_count` how many were kept. True only for a
// whole header with the magic, a declared count equal to fd_count, and the
// token (compared in constant time).
bool forkserver_request_valid(std::span<const char> header, bool truncated, std::size_t fd_count,
                              const std::string& token) noexcept;

// Receives one request on an accepted connection: its descriptors when it
// is valid; nullopt, with every descriptor that arrived closed, otherwise.
// Reads at most forkserver_request_size bytes (the socket's receive timeout
// bounds the wait); never throws for a peer's bytes.
std::optional<std::vector<int>> receive_forkserver_request(int conn, const std::string& token);

struct forked_child {
  pid_t pid = -1;
  int status_fd = -1;  // the connection; readable once the exit code has arrived
};

// Asks the zygote at `socket_path` to fork a child that receives `fds`.
// Throws std::system_error: errno on socket failures, errc::auth_failed or
// errc::peer_closed when the zygote refused or is gone.
forked_child request_fork(const std::string& socket_path, const std::string& token,
                          std::span<const int> fds);

// Reads the exit code from a status_fd (blocking), then tells the zygote it
// may reap the child. nullopt when the zygote closed the connection without
// one (the zygote itself ended).
std::optional<int> read_child_exit_code(int status_fd);

}  // namespace mphost::runtime
