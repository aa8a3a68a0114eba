#include "mphost/embed/interpreter.hpp"

#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "mphost/embed/bindings.hpp"
#include "mphost/embed/python.hpp"
#include "mphost/ipc/process_table.hpp"
#include "mphost/ipc/resource_registry.hpp"
#include "mphost/runtime/launch.hpp"
#include "startup.hpp"

namespace mphost::embed {
namespace startup {

bool register_builtin_modules() {
  return PyImport_AppendInittab("_mphost", &PyInit__mphost) == 0 &&
         PyImport_AppendInittab("_multiprocessing", &PyInit__multiprocessing) == 0;
}

std::string shim_directory(const std::string& executable) {
  const std::string bin = executable.substr(0, executable.rfind('/'));
  const std::string shim = bin.substr(0, bin.rfind('/')) + "/share/mphost/python";
  struct stat st{};
  const std::string marker = shim + "/multiprocessing/__init__.py";
  return ::stat(marker.c_str(), &st) == 0 && S_ISREG(st.st_mode) ? shim : std::string();
}

bool put_first_on_sys_path(const std::string& directory) {
  PyObject* path = PySys_GetObject("path");  // borrowed
  PyObject* entry = PyUnicode_DecodeFSDefault(directory.c_str());
  const bool ok = path != nullptr && entry != nullptr && PyList_Insert(path, 0, entry) == 0;
  Py_XDECREF(entry);
  if (!ok && !PyErr_Occurred()) PyErr_SetString(PyExc_RuntimeError, "sys.path is missing");
  return ok;
}

}  // namespace startup

namespace {

// Fills `config` from argv with python3's own parser and makes sys.executable
// the mphost binary. Returns the status of the first failing step.
PyStatus configure(PyConfig& config, const std::string& executable, const std::vector<char*>& argv) {
  PyStatus status = PyConfig_SetBytesArgv(&config, static_cast<Py_ssize_t>(argv.size()),
                                          const_cast<char* const*>(argv.data()));
  if (PyStatus_Exception(status)) return status;
  return PyConfig_SetBytesString(&config, &config.executable, executable.c_str());
}

// Puts the shim first on sys.path (after the entry Py_RunMain adds for the
// script) so that `import multiprocessing` is always mphost's.
bool install_shim(const std::string& executable) {
  const std::string shim = startup::shim_directory(executable);
  if (shim.empty()) {
    std::fprintf(stderr, "mphost: cannot find its multiprocessing package beside %s\n",
                 executable.substr(0, executable.rfind('/')).c_str());
    return false;
  }
  const bool ok = startup::put_first_on_sys_path(shim);
  if (!ok) PyErr_Print();
  return ok;
}

void finish_root_registry_at_exit() { ipc::finish_root_registry(); }

// The launcher's own options, before python3's: `--cluster=BACKEND` (or
// `--cluster BACKEND`) and `--workers-per-rank=K`. They are taken off argv;
// K reaches the cluster through MPHOST_WORKERS_PER_RANK. Returns false with a
// message printed when one is malformed.
bool take_launcher_options(std::vector<char*>& args, std::string& cluster) {
  auto value_of = [&](std::size_t i, const char* name, std::string& out) -> int {
    const std::size_t n = std::strlen(name);
    if (std::strncmp(args[i], name, n) != 0) return 0;
    if (args[i][n] == '=') {
      out = args[i] + n + 1;
      return 1;
    }
    if (args[i][n] != '\0') return 0;
    if (i + 1 >= args.size()) return -1;
    out = args[i + 1];
    return 2;
  };
  while (args.size() > 1) {
    std::string value;
    int used = value_of(1, "--cluster", cluster);
    if (used == 0) {
      used = value_of(1, "--workers-per-rank", value);
      if (used > 0) {
        char* end = nullptr;
        const long k = std::strtol(value.c_str(), &end, 10);
        if (value.empty() || *end != '\0' || k < 1 || k > 4096) {
          std::fprintf(stderr, "mphost: --workers-per-rank needs a whole number from 1 to 4096, not '%s'\n",
                       value.c_str());
          return false;
        }
        ::setenv("MPHOST_WORKERS_PER_RANK", value.c_str(), 1);
      }
    }
    if (used == 0) break;
    if (used < 0) {
      std::fprintf(stderr, "mphost: %s needs a value\n", args[1]);
      return false;
    }
    args.erase(args.begin() + 1, args.begin() + 1 + used);
  }
  if (!cluster.empty() && cluster != "mpi") {
    std::fprintf(stderr, "mphost: unknown cluster backend '%s' (known: mpi)\n", cluster.c_str());
    return false;
  }
  return true;
}

// Under --cluster: mphost.cluster._boot.start(backend) joins the cluster.
// Returns -1 when this process goes on to run the program (rank 0), else the
// exit status of a worker rank, which served and has nothing more to run.
int join_cluster(const std::string& backend) {
  PyObject* boot = PyImport_ImportModule("mphost.cluster._boot");
  PyObject* result = boot != nullptr ? PyObject_CallMethod(boot, "start", "s", backend.c_str()) : nullptr;
  Py_XDECREF(boot);
  if (result == nullptr) {
    PyErr_Print();  // a SystemExit exits here with its status, as at top level
    return 1;
  }
  const int code = result == Py_None ? -1 : static_cast<int>(PyLong_AsLong(result));
  Py_DECREF(result);
  if (PyErr_Occurred() != nullptr) {
    PyErr_Print();
    return 1;
  }
  return code;
}

int exit_with_status(PyStatus status) {
  if (PyStatus_IsExit(status)) return status.exitcode;
  Py_ExitStatusException(status);  // prints the error and exits
}

// The interpreter flags of a child come after `--mphost-child FD`.
int child_main(int argc, char** argv, const std::string& executable) {
  char* end = nullptr;
  const long fd = std::strtol(argv[2], &end, 10);
  if (end == argv[2] || *end != '\0' || fd < 0) {
    std::fprintf(stderr, "mphost: %s needs a descriptor number\n", child_mode_flag);
    return 2;
  }
  std::vector<char*> child_argv{argv[0]};
  for (int i = 3; i < argc; ++i) child_argv.push_back(argv[i]);

  PyConfig config;
  PyConfig_InitPythonConfig(&config);
  config.parse_argv = 1;
  PyStatus status = configure(config, executable, child_argv);
  if (!PyStatus_Exception(status)) status = Py_InitializeFromConfig(&config);
  PyConfig_Clear(&config);
  if (PyStatus_Exception(status)) return exit_with_status(status);
  if (!install_shim(executable)) return 1;

  int code = 1;
  PyObject* spawn = PyImport_ImportModule("multiprocessing.spawn");
  PyObject* result = spawn != nullptr ? PyObject_CallMethod(spawn, "_child_main", "l", fd) : nullptr;
  Py_XDECREF(spawn);
  if (result != nullptr) {
    code = static_cast<int>(PyLong_AsLong(result));
    Py_DECREF(result);
  }
  if (PyErr_Occurred() != nullptr) {
    // SystemExit is handled like the interpreter does at top level.
    code = 1;
    PyErr_Print();
  }
  if (Py_FinalizeEx() < 0 && code == 0) code = 120;
  return code;
}

}  // namespace

int launcher_main(int argc, char** argv) {
  if (!startup::register_builtin_modules()) {
    std::fprintf(stderr, "mphost: cannot register its built-in modules\n");
    return 1;
  }
  std::string executable;
  try {
    executable = runtime::current_executable();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mphost: %s\n", e.what());
    return 1;
  }
  if (argc >= 3 && std::strcmp(argv[1], child_mode_flag) == 0) {
    // A child records what it creates in its root's registry; it becomes a
    // member once it has work (a warm spare may wait long before it does).
    ipc::attach_registry_from_environment(false);
    const int code = child_main(argc, argv, executable);
    // A child that outlived its root and became the root of what it made.
    ipc::finish_root_registry();
    return code;
  }

  // A launcher started from inside a live mphost program (sys.executable run
  // as a subprocess) belongs to that program's tree; any other is a root. A
  // root first sweeps what killed roots left, then keeps its own registry,
  // emptied when the root ends: after Py_RunMain, or from the exit hooks when
  // the process ends another way (exit() from a start-up error, or an
  // unhandled KeyboardInterrupt, which finalizes and then raises SIGINT).
  const bool root = !ipc::attach_registry_from_environment() && ipc::start_root_registry();
  if (root) {
    std::atexit(&finish_root_registry_at_exit);
    ipc::note_this_process(ipc::process_role::main, "MainProcess");
  }

  std::vector<char*> args(argv, argv + argc);
  std::string cluster;
  if (!take_launcher_options(args, cluster)) {
    ipc::finish_root_registry();
    return 2;
  }
  PyConfig config;
  PyConfig_InitPythonConfig(&config);
  config.parse_argv = 1;
  PyStatus status = configure(config, executable, args);
  if (!PyStatus_Exception(status)) status = Py_InitializeFromConfig(&config);
  PyConfig_Clear(&config);
  if (PyStatus_Exception(status)) {
    ipc::finish_root_registry();
    return exit_with_status(status);
  }
  if (root) Py_AtExit(&finish_root_registry_at_exit);
  if (!install_shim(executable)) {
    Py_FinalizeEx();
    ipc::finish_root_registry();
    return 1;
  }
  if (!cluster.empty()) {
    const int served = join_cluster(cluster);
    if (served >= 0) {
      if (Py_FinalizeEx() < 0 && served == 0) return 120;
      ipc::finish_root_registry();
      return served;
    }
  }
  const int code = Py_RunMain();
  ipc::finish_root_registry();
  return code;
}

}  // namespace mphost::embed
