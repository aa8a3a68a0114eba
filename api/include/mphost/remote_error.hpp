#pragma once
// The errors of mphost's C++ API (mphost::host_pool and its futures).
//
// Every error derives from mphost::error (a std::runtime_error), so one
// catch clause takes them all:
//   remote_error       the Python callable raised; carries the exception's
//                      type name as Python prints it ("ValueError",
//                      "json.decoder.JSONDecodeError"), its str(), and the
//                      traceback formatted by the traceback module.
//   worker_lost        the worker process running the call died (killed by a
//                      signal, os._exit, a crash in native code). The pool
//                      has started a replacement; the call was not retried.
//   timeout_error      a wait with a time limit (future::get, call) ran out;
//                      the call itself goes on.
//   cancelled_error    the call was cancelled before it started (future::
//                      cancel, or the pool was shut down first).
//   conversion_error   a result cannot be represented as mphost::value the
//                      way it was asked for (a Python int beyond int64, a
//                      value of another kind than the accessor's).
//   pool_error         the pool cannot do what was asked (it is shut down,
//                      the worker executable cannot be started).
// Thread-safety: the objects are immutable after construction.
#include <stdexcept>
#include <string>
#include <sys/types.h>

namespace mphost {

class error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class remote_error : public error {
 public:
  remote_error(std::string type_name, std::string message, std::string traceback)
      : error(type_name + ": " + message),
        type_name_(std::move(type_name)),
        message_(std::move(message)),
        traceback_(std::move(traceback)) {}
  // The exception's type: its __qualname__, prefixed by its module unless
  // that is builtins.
  const std::string& type_name() const noexcept { return type_name_; }
  const std::string& message() const noexcept { return message_; }
  const std::string& traceback() const noexcept { return traceback_; }

 private:
  std::string type_name_;
  std::string message_;
  std::string traceback_;
};

class worker_lost : public error {
 public:
  worker_lost(pid_t pid, int signal, int exit_code)
      : error(describe(pid, signal, exit_code)), pid_(pid), signal_(signal), exit_code_(exit_code) {}
  pid_t pid() const noexcept { return pid_; }
  // The signal that ended the worker, or 0 if it exited.
  int signal() const noexcept { return signal_; }
  // Its exit status when it exited (signal() == 0).
  int exit_code() const noexcept { return exit_code_; }

 private:
  static std::string describe(pid_t pid, int signal, int exit_code) {
    std::string s = "worker process " + std::to_string(pid) + " died while running the call";
    if (signal != 0) return s + " (signal " + std::to_string(signal) + ")";
    return s + " (exit code " + std::to_string(exit_code) + ")";
  }
  pid_t pid_;
  int signal_;
  int exit_code_;
};

class timeout_error : public error {
 public:
  using error::error;
};

class cancelled_error : public error {
 public:
  using error::error;
};

class conversion_error : public error {
 public:
  using error::error;
};

class pool_error : public error {
 public:
  using error::error;
};

}  // namespace mphost
