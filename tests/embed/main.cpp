// The embed tests' main owns the interpreter: one interpreter for the whole
// executable, started before the first test and finalized after the last.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>

#include "mphost/embed/bindings.hpp"
#include "mphost/embed/python.hpp"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  PyImport_AppendInittab("_mphost", &PyInit__mphost);
  PyImport_AppendInittab("_multiprocessing", &PyInit__multiprocessing);
  // The isolated configuration ignores PYTHONMALLOC; the sanitizer runs set
  // it to "malloc" (tools/dev.sh) so that LeakSanitizer sees into Python
  // objects (pymalloc's arenas are mappings it does not scan).
  if (const char* allocator = std::getenv("PYTHONMALLOC"); allocator != nullptr && std::strcmp(allocator, "malloc") == 0) {
    PyPreConfig preconfig;
    PyPreConfig_InitIsolatedConfig(&preconfig);
    preconfig.allocator = PYMEM_ALLOCATOR_MALLOC;
    if (PyStatus pre = Py_PreInitialize(&preconfig); PyStatus_Exception(pre)) Py_ExitStatusException(pre);
  }
  PyConfig config;
  PyConfig_InitIsolatedConfig(&config);
  PyStatus status = Py_InitializeFromConfig(&config);
  PyConfig_Clear(&config);
  if (PyStatus_Exception(status)) Py_ExitStatusException(status);
  // The shim's source tree stands in for the installed package.
  PyObject* path = PySys_GetObject("path");
  PyObject* shim = PyUnicode_FromString(MPHOST_SHIM_DIR);
  PyList_Insert(path, 0, shim);
  Py_DECREF(shim);
  const int result = RUN_ALL_TESTS();
  if (Py_FinalizeEx() < 0) return 120;
  return result;
}
