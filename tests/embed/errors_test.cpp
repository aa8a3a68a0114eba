#include "mphost/embed/errors.hpp"

#include <gtest/gtest.h>

#include <cerrno>
#include <stdexcept>
#include <string>

#include "mphost/ipc/error.hpp"

namespace mphost::embed {
namespace {

// The Python type `set_python_error` raises for `error`, by qualified name.
std::string raised_type(const std::system_error& error) {
  set_python_error(error);
  PyObject* type = PyErr_Occurred();
  EXPECT_NE(type, nullptr);
  if (type == nullptr) return "";
  PyObject* module = PyObject_GetAttrString(type, "__module__");
  PyObject* name = PyObject_GetAttrString(type, "__qualname__");
  std::string result = std::string(PyUnicode_AsUTF8(module)) + "." + PyUnicode_AsUTF8(name);
  Py_XDECREF(module);
  Py_XDECREF(name);
  PyErr_Clear();
  return result;
}

std::system_error mphost_error(errc code) { return std::system_error(make_error_code(code), "test"); }

TEST(ErrorsTest, ErrnoBecomesTheMatchingOSErrorSubclass) {
  EXPECT_EQ(raised_type(std::system_error(ENOENT, std::system_category(), "open")), "builtins.FileNotFoundError");
  EXPECT_EQ(raised_type(std::system_error(EEXIST, std::system_category(), "open")), "builtins.FileExistsError");
  EXPECT_EQ(raised_type(std::system_error(ECHILD, std::system_category(), "waitpid")), "builtins.ChildProcessError");
  EXPECT_EQ(raised_type(std::system_error(ESRCH, std::system_category(), "kill")), "builtins.ProcessLookupError");
  EXPECT_EQ(raised_type(std::system_error(EPIPE, std::system_category(), "write")), "builtins.BrokenPipeError");
  EXPECT_EQ(raised_type(std::system_error(EIO, std::system_category(), "read")), "builtins.OSError");
}

TEST(ErrorsTest, ErrnoValueAndMessageAreKept) {
  set_python_error(std::system_error(ENOENT, std::system_category(), "shm_open"));
  PyObject *type, *value, *traceback;
  PyErr_Fetch(&type, &value, &traceback);
  PyErr_NormalizeException(&type, &value, &traceback);
  PyObject* err = PyObject_GetAttrString(value, "errno");
  EXPECT_EQ(PyLong_AsLong(err), ENOENT);
  Py_XDECREF(err);
  Py_XDECREF(type);
  Py_XDECREF(value);
  Py_XDECREF(traceback);
}

TEST(ErrorsTest, EveryMphostCodeHasItsStdlibException) {
  EXPECT_EQ(raised_type(mphost_error(errc::peer_closed)), "builtins.EOFError");
  EXPECT_EQ(raised_type(mphost_error(errc::buffer_too_short)), "multiprocessing.context.BufferTooShort");
  EXPECT_EQ(raised_type(mphost_error(errc::auth_failed)), "multiprocessing.context.AuthenticationError");
  EXPECT_EQ(raised_type(mphost_error(errc::handle_closed)), "builtins.OSError");
  EXPECT_EQ(raised_type(mphost_error(errc::released_too_many_times)), "builtins.ValueError");
  EXPECT_EQ(raised_type(mphost_error(errc::message_too_large)), "builtins.ValueError");
  EXPECT_EQ(raised_type(mphost_error(errc::corrupt_frame)), "builtins.OSError");
  EXPECT_EQ(raised_type(mphost_error(errc::worker_lost)), "multiprocessing.context.ProcessError");
  EXPECT_EQ(raised_type(mphost_error(errc::not_owner)), "builtins.AssertionError");
  EXPECT_EQ(raised_type(mphost_error(errc::broken_barrier)), "threading.BrokenBarrierError");
}

TEST(ErrorsTest, ExceptionClassesAreTheShimsOwn) {
  set_python_error(mphost_error(errc::auth_failed));
  PyObject* raised = PyErr_Occurred();
  PyObject* context = PyImport_ImportModule("multiprocessing");
  ASSERT_NE(context, nullptr);
  PyObject* cls = PyObject_GetAttrString(context, "AuthenticationError");
  EXPECT_EQ(raised, cls);
  Py_XDECREF(cls);
  Py_XDECREF(context);
  PyErr_Clear();
}

TEST(ErrorsTest, ErrorsToPythonMapsWhatTheCoreThrows) {
  EXPECT_TRUE(errors_to_python([] {}));
  EXPECT_EQ(PyErr_Occurred(), nullptr);
  EXPECT_FALSE(errors_to_python([] { throw std::system_error(make_error_code(errc::handle_closed)); }));
  PyObject *type, *value, *traceback;
  PyErr_Fetch(&type, &value, &traceback);
  PyErr_NormalizeException(&type, &value, &traceback);
  EXPECT_EQ(type, PyExc_OSError);
  PyObject* text = PyObject_Str(value);
  EXPECT_STREQ(PyUnicode_AsUTF8(text), "handle is closed");
  Py_XDECREF(text);
  Py_XDECREF(type);
  Py_XDECREF(value);
  Py_XDECREF(traceback);
  EXPECT_FALSE(errors_to_python([] { throw std::system_error(ENOENT, std::system_category(), "shm_open"); }));
  EXPECT_TRUE(PyErr_ExceptionMatches(PyExc_FileNotFoundError));
  PyErr_Clear();
  // Anything else the core might throw is a RuntimeError with its message.
  EXPECT_FALSE(errors_to_python([] { throw std::length_error("too long"); }));
  EXPECT_TRUE(PyErr_ExceptionMatches(PyExc_RuntimeError));
  PyErr_Clear();
}

}  // namespace
}  // namespace mphost::embed
