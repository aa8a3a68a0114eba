// The embedding API (application.hpp): an application's own interpreter with
// mphost's multiprocessing inside. The launcher's start-up steps are shared
// through startup.hpp; what differs is policy: the application's PyConfig,
// the mphost executable its children start as, and whether fork is allowed.
#include "mphost/embed/application.hpp"

#include <dlfcn.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "mphost/embed/fork_hooks.hpp"
#include "mphost/embed/python.hpp"
#include "mphost/ipc/process_table.hpp"
#include "mphost/ipc/resource_registry.hpp"
#include "mphost/runtime/launch.hpp"
#include "startup.hpp"

namespace mphost::embed {

struct interpreter::state {
  std::string executable;
  PyThreadState* main_thread = nullptr;
};

namespace {

std::atomic<bool> interpreter_created{false};

bool is_executable_file(const std::string& path) {
  struct stat st{};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(path.c_str(), X_OK) == 0;
}

std::string parent_directory(const std::string& path) {
  const auto slash = path.rfind('/');
  return slash == std::string::npos || slash == 0 ? std::string() : path.substr(0, slash);
}

// The file this code was loaded from: libmphost_embed.so when the
// application links the installed library, else the executable itself.
std::string own_file() {
  Dl_info info{};
  if (::dladdr(reinterpret_cast<void*>(&own_file), &info) != 0 && info.dli_fname != nullptr) {
    std::array<char, PATH_MAX> resolved{};
    if (::realpath(info.dli_fname, resolved.data()) != nullptr) return resolved.data();
  }
  return runtime::current_executable();
}

// settings, then $MPHOST_EXECUTABLE, then bin/mphost of a prefix above the
// library: <prefix>/lib[/<multiarch>]/libmphost_embed.so or a build tree's
// lib/ and bin/.
std::string locate_mphost(const application_settings& settings) {
  if (!settings.mphost_executable.empty()) return settings.mphost_executable;
  if (const char* named = std::getenv("MPHOST_EXECUTABLE"); named != nullptr && *named != '\0') return named;
  std::string prefix = parent_directory(own_file());
  for (int level = 0; level < 4 && !prefix.empty(); ++level) {
    const std::string candidate = prefix + "/bin/mphost";
    if (is_executable_file(candidate)) return candidate;
    prefix = parent_directory(prefix);
  }
  throw std::runtime_error(
      "mphost::embed: cannot find the mphost executable; set application_settings::mphost_executable "
      "or MPHOST_EXECUTABLE");
}

void check_start_method(const application_settings& settings) {
  const std::string& method = settings.start_method;
  if (method != "spawn" && method != "forkserver" && method != "fork")
    throw std::invalid_argument("mphost::embed: unknown start method '" + method + "'");
  if (method == "fork" && !settings.allow_fork)
    throw std::invalid_argument("mphost::embed: start method 'fork' needs allow_fork");
}

void throw_on(PyStatus status, const char* step) {
  if (!PyStatus_Exception(status)) return;
  std::string what = std::string("mphost::embed: ") + step;
  if (status.func != nullptr) what += std::string(": ") + status.func;
  if (status.err_msg != nullptr) what += std::string(": ") + status.err_msg;
  throw std::runtime_error(what);
}

void fill_config(PyConfig& config, const application_settings& settings, const std::string& executable) {
  config.parse_argv = 0;  // the application's argv is sys.argv, nothing more
  std::vector<char*> argv;
  for (const std::string& word : settings.argv) argv.push_back(const_cast<char*>(word.c_str()));
  if (!argv.empty())
    throw_on(PyConfig_SetBytesArgv(&config, static_cast<Py_ssize_t>(argv.size()), argv.data()), "argv");
  throw_on(PyConfig_SetBytesString(&config, &config.executable, executable.c_str()), "executable");
  if (!settings.program_name.empty())
    throw_on(PyConfig_SetBytesString(&config, &config.program_name, settings.program_name.c_str()),
             "program_name");
}

// str() of `object` (a borrowed reference), or "" if that fails.
std::string text_of(PyObject* object) {
  if (object == nullptr) return {};
  PyObject* text = PyObject_Str(object);
  std::string out;
  if (text != nullptr) {
    Py_ssize_t size = 0;
    const char* data = PyUnicode_AsUTF8AndSize(text, &size);
    if (data != nullptr) out.assign(data, static_cast<std::size_t>(size));
    Py_DECREF(text);
  }
  PyErr_Clear();
  return out;
}

// str() of an attribute of `object`, "" if it has none.
std::string attribute_text(PyObject* object, const char* name) {
  PyObject* attribute = PyObject_GetAttrString(object, name);
  std::string out = text_of(attribute);
  Py_XDECREF(attribute);
  PyErr_Clear();
  return out;
}

std::string qualified_type_name(PyObject* type) {
  const std::string name = attribute_text(type, "__qualname__");
  const std::string module = attribute_text(type, "__module__");
  return module.empty() || module == "builtins" ? name : module + "." + name;
}

// The pending Python exception as a python_error (GIL held); clears it.
python_error take_python_error() {
  PyObject* type = nullptr;
  PyObject* value = nullptr;
  PyObject* trace = nullptr;
  PyErr_Fetch(&type, &value, &trace);
  PyErr_NormalizeException(&type, &value, &trace);
  if (trace != nullptr && value != nullptr) PyException_SetTraceback(value, trace);
  std::string formatted;
  if (PyObject* module = PyImport_ImportModule("traceback")) {
    PyObject* lines = PyObject_CallMethod(module, "format_exception", "OOO", type, value ? value : Py_None,
                                          trace ? trace : Py_None);
    if (lines != nullptr) {
      PyObject* empty = PyUnicode_FromString("");
      PyObject* joined = empty ? PyUnicode_Join(empty, lines) : nullptr;
      formatted = text_of(joined);
      Py_XDECREF(joined);
      Py_XDECREF(empty);
      Py_DECREF(lines);
    }
    Py_DECREF(module);
  }
  PyErr_Clear();
  std::string name = type != nullptr ? qualified_type_name(type) : "SystemError";
  std::string message = text_of(value);
  Py_XDECREF(type);
  Py_XDECREF(value);
  Py_XDECREF(trace);
  return python_error(std::move(name), std::move(message), std::move(formatted));
}

// Holds the GIL for a scope, on whichever thread.
class gil_scope {
 public:
  gil_scope() : state_(PyGILState_Ensure()) {}
  ~gil_scope() { PyGILState_Release(state_); }
  gil_scope(const gil_scope&) = delete;
  gil_scope& operator=(const gil_scope&) = delete;

 private:
  PyGILState_STATE state_;
};

// A new reference, or the pending exception thrown as python_error.
PyObject* checked(PyObject* object) {
  if (object == nullptr) throw take_python_error();
  return object;
}

PyObject* main_namespace() {
  PyObject* main = checked(PyImport_AddModule("__main__"));  // borrowed
  return PyModule_GetDict(main);                              // borrowed
}

// str() of `object`, or the exception that raised as python_error.
std::string str_of(PyObject* object) {
  PyObject* text = checked(PyObject_Str(object));
  Py_ssize_t size = 0;
  const char* data = PyUnicode_AsUTF8AndSize(text, &size);
  std::string out = data != nullptr ? std::string(data, static_cast<std::size_t>(size)) : std::string();
  Py_DECREF(text);
  if (data == nullptr) throw take_python_error();
  return out;
}

// Owns one reference.
struct ref {
  PyObject* object;
  explicit ref(PyObject* o) : object(checked(o)) {}
  ~ref() { Py_DECREF(object); }
  ref(const ref&) = delete;
  ref& operator=(const ref&) = delete;
};

// Python start-up once the interpreter is there: sys.path, and the start
// method that multiprocessing falls back to until the program chooses one.
void prepare_python(const application_settings& settings, const std::string& executable) {
  const std::string shim = startup::shim_directory(executable);
  if (shim.empty())
    throw std::runtime_error("mphost::embed: no multiprocessing package in " + parent_directory(
                                 parent_directory(executable)) + "/share/mphost/python");
  for (auto entry = settings.python_path.rbegin(); entry != settings.python_path.rend(); ++entry)
    if (!startup::put_first_on_sys_path(*entry)) throw take_python_error();
  if (!startup::put_first_on_sys_path(shim)) throw take_python_error();
  ref globals(PyDict_New());
  ref method(PyUnicode_FromString(settings.start_method.c_str()));
  if (PyDict_SetItemString(globals.object, "method", method.object) != 0 ||
      PyDict_SetItemString(globals.object, "__builtins__", PyEval_GetBuiltins()) != 0)
    throw take_python_error();
  ref done(PyRun_String(
      "import multiprocessing.context as context\n"
      "context._default_context._fallback = context._concrete_contexts[method]\n",
      Py_file_input, globals.object, globals.object));
}

void finish_registry_at_exit() { ipc::finish_root_registry(); }

int exit_status_of_system_exit() {
  PyObject* type = nullptr;
  PyObject* value = nullptr;
  PyObject* trace = nullptr;
  PyErr_Fetch(&type, &value, &trace);
  PyErr_NormalizeException(&type, &value, &trace);
  PyObject* code = value != nullptr ? PyObject_GetAttrString(value, "code") : nullptr;
  PyErr_Clear();
  int status = 0;
  if (code != nullptr && code != Py_None) {
    if (PyLong_Check(code)) {
      status = static_cast<int>(PyLong_AsLong(code));
    } else {
      std::fprintf(stderr, "%s\n", text_of(code).c_str());
      status = 1;
    }
  }
  PyErr_Clear();
  Py_XDECREF(code);
  Py_XDECREF(type);
  Py_XDECREF(value);
  Py_XDECREF(trace);
  return status;
}

}  // namespace

python_error::python_error(std::string type_name, std::string message, std::string traceback)
    : std::runtime_error(message.empty() ? type_name : type_name + ": " + message),
      type_name_(std::move(type_name)),
      message_(std::move(message)),
      traceback_(std::move(traceback)) {}

interpreter::interpreter(const application_settings& settings) : state_(std::make_unique<state>()) {
  check_start_method(settings);
  state_->executable = locate_mphost(settings);
  if (interpreter_created.exchange(true))
    throw std::logic_error("mphost::embed: a process has at most one interpreter");
  if (Py_IsInitialized())
    throw std::logic_error("mphost::embed: Python was initialised without mphost::embed::interpreter");
  if (!startup::register_builtin_modules())
    throw std::runtime_error("mphost::embed: cannot register the built-in modules");

  // The application is the root of its program tree unless an mphost
  // program started it; the tree's names go when the interpreter does.
  if (!ipc::attach_registry_from_environment() && ipc::start_root_registry()) {
    std::atexit(&finish_registry_at_exit);
    ipc::note_this_process(ipc::process_role::main, "MainProcess");
  }

  PyConfig config;
  if (settings.isolated)
    PyConfig_InitIsolatedConfig(&config);
  else
    PyConfig_InitPythonConfig(&config);
  try {
    fill_config(config, settings, state_->executable);
    throw_on(Py_InitializeFromConfig(&config), "Py_InitializeFromConfig");
  } catch (...) {
    PyConfig_Clear(&config);
    throw;
  }
  PyConfig_Clear(&config);

  set_fork_allowed(settings.allow_fork);
  try {
    prepare_python(settings, state_->executable);
  } catch (...) {
    Py_FinalizeEx();
    throw;
  }
  state_->main_thread = PyEval_SaveThread();
}

interpreter::~interpreter() {
  PyEval_RestoreThread(state_->main_thread);
  Py_FinalizeEx();
  ipc::finish_root_registry();
}

void interpreter::exec(std::string_view code) {
  gil_scope gil;
  const std::string source(code);
  PyObject* names = main_namespace();
  ref done(PyRun_String(source.c_str(), Py_file_input, names, names));
}

std::string interpreter::eval(std::string_view expression) {
  gil_scope gil;
  const std::string source(expression);
  PyObject* names = main_namespace();
  ref value(PyRun_String(source.c_str(), Py_eval_input, names, names));
  return str_of(value.object);
}

std::string interpreter::call(std::string_view target, const std::vector<std::string>& args) {
  const auto colon = target.find(':');
  if (colon == std::string_view::npos || colon == 0 || colon + 1 == target.size())
    throw std::invalid_argument("mphost::embed: a call target is \"pkg.mod:func\", not \"" +
                                std::string(target) + "\"");
  gil_scope gil;
  const std::string module_name(target.substr(0, colon));
  PyObject* callable = checked(PyImport_ImportModule(module_name.c_str()));
  std::string_view rest = target.substr(colon + 1);
  while (!rest.empty()) {
    const auto dot = rest.find('.');
    const std::string attribute(rest.substr(0, dot));
    PyObject* next = PyObject_GetAttrString(callable, attribute.c_str());
    Py_DECREF(callable);
    callable = checked(next);
    rest = dot == std::string_view::npos ? std::string_view() : rest.substr(dot + 1);
  }
  ref function(callable);
  ref arguments(PyTuple_New(static_cast<Py_ssize_t>(args.size())));
  for (std::size_t i = 0; i < args.size(); ++i) {
    PyObject* word = checked(PyUnicode_DecodeUTF8(args[i].data(), static_cast<Py_ssize_t>(args[i].size()),
                                                  "surrogateescape"));
    PyTuple_SET_ITEM(arguments.object, static_cast<Py_ssize_t>(i), word);  // steals
  }
  ref result(PyObject_Call(function.object, arguments.object, nullptr));
  return str_of(result.object);
}

int interpreter::run_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("mphost::embed: cannot open " + path);
  std::ostringstream source;
  source << in.rdbuf();
  std::array<char, PATH_MAX> absolute{};
  const std::string location = ::realpath(path.c_str(), absolute.data()) != nullptr ? absolute.data() : path;

  gil_scope gil;
  PyObject* names = main_namespace();
  {
    ref file(PyUnicode_DecodeFSDefault(location.c_str()));
    if (PyDict_SetItemString(names, "__file__", file.object) != 0 ||
        PyDict_SetItemString(names, "__cached__", Py_None) != 0)
      throw take_python_error();
  }
  PyObject* code = Py_CompileString(source.str().c_str(), location.c_str(), Py_file_input);
  PyObject* result = code != nullptr ? PyEval_EvalCode(code, names, names) : nullptr;
  Py_XDECREF(code);
  if (result != nullptr) {
    Py_DECREF(result);
    return 0;
  }
  if (PyErr_ExceptionMatches(PyExc_SystemExit)) return exit_status_of_system_exit();
  throw take_python_error();
}

const std::string& interpreter::mphost_executable() const noexcept { return state_->executable; }

}  // namespace mphost::embed
