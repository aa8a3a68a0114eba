#pragma once
// mphost::embed -- a C++ application that embeds CPython and wants a
// `multiprocessing` that works.
//
// Embedding CPython breaks spawn everywhere: the child is started as
// sys.executable, which is the application itself. An application that
// creates its interpreter through this header gets mphost's runtime instead:
//
//   - `import multiprocessing` is mphost's (the shim is first on sys.path and
//     the `_mphost` and `_multiprocessing` modules are built in);
//   - spawn and forkserver children are the installed `mphost` executable in
//     child mode, never the application, and they see the application's
//     sys.path, working directory and main script;
//   - fork of the application is refused (ValueError from Process.start())
//     unless the settings allow it: a fork copies the application's threads'
//     locks and state, which only the application can judge safe.
//
// The interpreter is Debian's CPython 3.11: the shared libmphost_embed.so
// this target installs depends on libpython3.11.so.1.0 (package
// libpython3.11) and uses its standard library in /usr/lib/python3.11. The
// application links only mphost::embed (find_package(mphost)); it needs no
// Python headers, since this header uses the C++ standard library alone.
//
// Lifetime. CPython allows one main interpreter per process and cannot be
// re-created reliably after it is finalized, so at most one `interpreter`
// may ever be constructed in a process; a second construction throws
// std::logic_error. Its destructor finalizes the interpreter: it must run on
// the thread that constructed it, after every other thread has finished its
// calls. Names in /dev/shm that the program tree made are removed when the
// interpreter is finalized, or by the next mphost program if the process is
// killed.
//
// Thread-safety. Between construction and destruction the GIL is not held by
// the application: exec(), eval(), call() and run_file() may be called from
// any thread, concurrently; each takes the GIL for its duration (Python
// code serializes, as in any CPython process).
//
// Errors. A Python exception raised by the code an application runs arrives
// as mphost::embed::python_error carrying the exception's type name
// (qualified, e.g. "ValueError" or "pkg.mod.MyError"), its message (str()),
// and the formatted traceback. SystemExit in run_file() is its exit status,
// as with python3. Start-up failures (bad settings, an mphost executable or
// shim that cannot be found, PyConfig errors) throw std::runtime_error or
// std::invalid_argument before any Python runs.

#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#if defined(__GNUC__)
#define MPHOST_EMBED_API __attribute__((visibility("default")))
#else
#define MPHOST_EMBED_API
#endif

namespace mphost::embed {

// What the application decides about its interpreter.
struct application_settings {
  // sys.argv, as given (never parsed as python3 options). Empty: [""].
  std::vector<std::string> argv;
  // PyConfig.program_name; empty: the interpreter's default.
  std::string program_name;
  // Entries put on sys.path after mphost's shim and before the standard
  // library; children inherit them with the rest of sys.path.
  std::vector<std::string> python_path;
  // PyConfig_InitIsolatedConfig (no PYTHON* environment variables, no user
  // site-packages, no signal handlers) instead of PyConfig_InitPythonConfig.
  bool isolated = false;
  // Whether the fork start method may fork this application.
  bool allow_fork = false;
  // The start method multiprocessing uses until the program sets one:
  // "spawn", "forkserver", or "fork" (needs allow_fork).
  std::string start_method = "spawn";
  // The `mphost` executable children start as. Empty: $MPHOST_EXECUTABLE,
  // else bin/mphost of the prefix libmphost_embed.so was installed in.
  std::string mphost_executable;
};

// A Python exception, taken out of the interpreter.
class MPHOST_EMBED_API python_error : public std::runtime_error {
 public:
  python_error(std::string type_name, std::string message, std::string traceback);

  const std::string& type_name() const noexcept { return type_name_; }
  const std::string& message() const noexcept { return message_; }
  // "Traceback (most recent call last): ..." as traceback.format_exception
  // gives it, ending with the "Type: message" line.
  const std::string& traceback() const noexcept { return traceback_; }

 private:
  std::string type_name_;
  std::string message_;
  std::string traceback_;
};

// The process's embedded interpreter (see the contract above).
class MPHOST_EMBED_API interpreter {
 public:
  explicit interpreter(const application_settings& settings);
  ~interpreter();
  interpreter(const interpreter&) = delete;
  interpreter& operator=(const interpreter&) = delete;

  // Runs statements in the namespace of __main__.
  void exec(std::string_view code);

  // str() of an expression evaluated in the namespace of __main__.
  std::string eval(std::string_view expression);

  // Calls "pkg.mod:func" (the part after ':' may be dotted:
  // "pkg.mod:Class.method") with the given strings as positional arguments;
  // returns str() of the result.
  std::string call(std::string_view target, const std::vector<std::string>& args = {});

  // Runs a script as `python3 path` would, in __main__ (so that spawn
  // children import it as __mp_main__). Returns 0, or the status of a
  // SystemExit it raised; any other exception throws python_error.
  int run_file(const std::string& path);

  // The executable spawn and forkserver children start as.
  const std::string& mphost_executable() const noexcept;

 private:
  struct state;
  std::unique_ptr<state> state_;
};

}  // namespace mphost::embed
