// Spawn bindings: start a child in child mode and hand it its work, from the
// warm pool when a matching spare is waiting.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>

#include <algorithm>

#include "mphost/embed/bindings.hpp"
#include "mphost/embed/gil.hpp"
#include "mphost/ipc/resource_registry.hpp"
#include "mphost/runtime/handover.hpp"
#include "mphost/runtime/warm_pool.hpp"

namespace py = pybind11;

namespace mphost::embed {
namespace {

// Set once, before the fork handlers that use it are registered.
runtime::warm_pool* spares_for_fork = nullptr;

runtime::warm_pool& spare_children() {
  // Never destroyed: spares must outlive every static that might start children at exit.
  static runtime::warm_pool* const pool = [] {
    spares_for_fork = new runtime::warm_pool();
    ::pthread_atfork([] { spares_for_fork->before_fork(); }, [] { spares_for_fork->after_fork_in_parent(); },
                     [] { spares_for_fork->after_fork_in_child(); });
    return spares_for_fork;
  }();
  return *pool;
}

runtime::launch_request child_request(const std::string& executable, const std::vector<std::string>& flags) {
  runtime::launch_request request{executable, {"--mphost-child", "{fd}"}, {}};
  request.args.insert(request.args.end(), flags.begin(), flags.end());
  return request;
}

// A descriptor the caller asked to pass that is not open: say which.
[[noreturn]] void throw_unopened_source(const std::vector<runtime::fd_placement>& placements,
                                        const std::system_error& error) {
  for (const runtime::fd_placement& p : placements) {
    if (::fcntl(p.source, F_GETFD) < 0) {
      throw std::system_error(EBADF, std::generic_category(),
                              "cannot pass descriptor " + std::to_string(p.source) + " to the child: it is not open");
    }
  }
  throw error;
}

}  // namespace

void bind_spawn(py::module_& m) {
  m.def(
      "spawn_child",
      [](const std::string& executable, const std::vector<std::string>& flags, const py::bytes& payload,
         const std::vector<std::pair<int, int>>& fds, const std::optional<std::string>& key,
         bool keep_warm, std::size_t spares, std::optional<double> burst_gap_ms) {
        std::string_view bytes = payload;
        std::vector<runtime::fd_placement> placements;
        for (const auto& [source, target] : fds) placements.push_back({source, target});
        return without_gil([&] {
          const runtime::launch_request request = child_request(executable, flags);
          std::optional<runtime::waiting_child> child;
          if (key) child = spare_children().take(*key);
          bool spare = child.has_value();
          for (bool retried = false;; retried = true) {
            if (!child) child = runtime::launch_waiting_child(request);
            try {
              runtime::send_handover(child->sock, std::as_bytes(std::span(bytes.data(), bytes.size())), placements);
              break;
            } catch (const std::system_error& e) {
              const bool died = e.code() == std::errc::broken_pipe || e.code() == std::errc::connection_reset;
              // A spare that died before its work came (killed from outside)
              // is not the caller's child: start a fresh one instead.
              if (died && spare) {
                runtime::abandon(*child);
                child.reset();
                spare = false;
                continue;
              }
              // A child that died before reading reports itself through its exit code.
              if (died) break;
              const bool socket_lost = !runtime::socket_intact(*child);
              runtime::abandon(*child);
              child.reset();
              // Our own socket closed under us: another child will do.
              if (socket_lost && !retried) continue;
              if (e.code() == std::errc::bad_file_descriptor) throw_unopened_source(placements, e);
              throw;
            }
          }
          ::close(child->sock);
          if (key && keep_warm) {
            runtime::spare_policy policy;
            policy.limit = std::max<std::size_t>(spares, 1);
            if (burst_gap_ms && *burst_gap_ms >= 0)
              policy.burst_gap = std::chrono::milliseconds(static_cast<long long>(*burst_gap_ms));
            spare_children().set_policy(policy);
            spare_children().stock_in_background(request, *key);
          }
          return child->pid;
        });
      },
      py::arg("executable"), py::arg("flags"), py::arg("payload"), py::arg("fds"), py::arg("key") = py::none(),
      py::arg("keep_warm") = false, py::arg("spares") = 1, py::arg("burst_gap_ms") = py::none(),
      "Start an mphost child (or take a waiting one started under `key`), hand it `payload` and "
      "the (source, target) descriptors, and return its pid. Without a key the warm pool is not "
      "used; with keep_warm, spares are started for the next calls with the same key: one, or up "
      "to `spares` when children are started in bursts (starts less than burst_gap_ms apart).");

  m.def(
      "receive_handover",
      [](int fd) {
        std::vector<std::byte> payload;
        try {
          payload = without_gil([&] { return runtime::receive_handover(fd); });
        } catch (...) {
          ::close(fd);  // (its number may have moved: receive_handover updates fd)
          throw;
        }
        ::close(fd);
        // Work from here on: this process may create names of the tree.
        ipc::join_current_registry();
        return py::bytes(reinterpret_cast<const char*>(payload.data()), payload.size());
      },
      py::arg("fd"),
      "In a child: wait for the parent's handover on socket `fd`, place its descriptors, close "
      "the socket and return the payload. EOFError when the parent closed it instead.");

  m.def("warm_pool_has_spare", [] { return spare_children().has_spare(); });
  m.def("warm_pool_spare_count", [] { return spare_children().spare_count(); },
        "How many spare children are waiting now.");
}

}  // namespace mphost::embed
