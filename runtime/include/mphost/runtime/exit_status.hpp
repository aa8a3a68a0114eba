#pragma once
// How a child process ended, as multiprocessing reports it: 0 on success,
// n for exit(n), -signum for death by signal.

#include <sys/types.h>

#include <optional>

namespace mphost::runtime {

// Converts a waitpid(2) status into the exit code convention above.
int exit_code_from_wait_status(int status) noexcept;

// Reaps `pid` if it has ended. With `block`, waits until it ends (retrying
// on EINTR unless `on_interrupt` returns false, in which case it returns
// nullopt). Without `block`, returns nullopt while the child still runs.
// Throws std::system_error (e.g. ECHILD) when the pid is not our child.
std::optional<int> wait_for_exit(pid_t pid, bool block, bool (*on_interrupt)() = nullptr);

}  // namespace mphost::runtime
