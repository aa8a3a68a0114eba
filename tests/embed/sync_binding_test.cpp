// _mphost.SharedEvent, SharedCondition and SharedBarrier seen from Python:
// outcomes become the values and exception types the stdlib uses.
#include <gtest/gtest.h>

#include <string>

#include "mphost/embed/python.hpp"

namespace {

// Runs `code` in a fresh namespace; the qualified type name of the exception
// it raised ("" when none), or the value of `result` when `expect` is given.
std::string run(const std::string& code, const char* expect = nullptr) {
  PyObject* globals = PyDict_New();
  PyDict_SetItemString(globals, "__builtins__", PyEval_GetBuiltins());
  PyObject* done = PyRun_String(code.c_str(), Py_file_input, globals, globals);
  std::string outcome;
  if (done == nullptr) {
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    PyObject* module = PyObject_GetAttrString(type, "__module__");
    PyObject* name = PyObject_GetAttrString(type, "__qualname__");
    outcome = std::string(PyUnicode_AsUTF8(module)) + "." + PyUnicode_AsUTF8(name);
    Py_XDECREF(module);
    Py_XDECREF(name);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(traceback);
  } else if (expect != nullptr) {
    PyObject* result = PyDict_GetItemString(globals, expect);
    PyObject* text = result != nullptr ? PyObject_Repr(result) : nullptr;
    outcome = text != nullptr ? PyUnicode_AsUTF8(text) : "<missing>";
    Py_XDECREF(text);
  }
  Py_XDECREF(done);
  Py_DECREF(globals);
  return outcome;
}

TEST(SyncBindingTest, ABrokenBarrierRaisesThreadingsBrokenBarrierError) {
  EXPECT_EQ(run("import _mphost\nb = _mphost.SharedBarrier(2, unlink=True)\nb.wait(0)\n"),
            "threading.BrokenBarrierError");
  EXPECT_EQ(run("import _mphost, threading\nb = _mphost.SharedBarrier(2, unlink=True)\n"
                "try:\n    b.wait(timeout=0)\nexcept threading.BrokenBarrierError:\n    pass\n"
                "result = (b.broken, b.state, b.n_waiting, b.count, b.name)\n",
                "result"),
            "(True, -2, 0, 0, None)");
  EXPECT_EQ(run("import _mphost\n_mphost.SharedBarrier(0)\n"), "builtins.ValueError");
}

TEST(SyncBindingTest, TheLastPartysActionRunsAndItsErrorPropagatesUnchanged) {
  EXPECT_EQ(run("import _mphost\nran = []\nb = _mphost.SharedBarrier(1, unlink=True)\n"
                "result = (b.wait(None, lambda: ran.append(1)), b.wait(action=lambda: ran.append(2)), ran)\n",
                "result"),
            "(0, 0, [1, 2])");
  EXPECT_EQ(run("import _mphost\nb = _mphost.SharedBarrier(1, unlink=True)\n"
                "def fail():\n    raise KeyError('action')\n"
                "try:\n    b.wait(None, fail)\nexcept KeyError as e:\n    result = (e.args, b.broken)\n",
                "result"),
            "(('action',), True)");
}

TEST(SyncBindingTest, EventWaitsReturnTheFlagAndRejectBadTimeouts) {
  EXPECT_EQ(run("import _mphost\ne = _mphost.SharedEvent(unlink=True)\n"
                "result = [e.wait(0.01), e.wait(-1), e.is_set()]\ne.set()\n"
                "result += [e.wait(), e.wait(timeout=0), e.is_set()]\ne.clear()\nresult.append(e.is_set())\n",
                "result"),
            "[False, False, False, True, True, True, False]");
  EXPECT_EQ(run("import _mphost\n_mphost.SharedEvent(unlink=True).wait(float('nan'))\n"), "builtins.ValueError");
  EXPECT_EQ(run("import _mphost\n_mphost.SharedEvent(unlink=True).wait('soon')\n"), "builtins.TypeError");
  EXPECT_EQ(run("import _mphost\n_mphost.SharedEvent(unlink=True).set(1)\n"), "builtins.TypeError");
}

TEST(SyncBindingTest, ANamedObjectOpensByNameAndAMissingNameIsFileNotFound) {
  EXPECT_EQ(run("import _mphost\ne = _mphost.SharedEvent()\nother = _mphost.SharedEvent.open(e.name)\n"
                "other.set()\nresult = (e.is_set(), _mphost.sync_unlink(e.name), _mphost.sync_unlink(e.name))\n",
                "result"),
            "(True, True, False)");
  EXPECT_EQ(run("import _mphost\n_mphost.SharedBarrier.open('mphost-no-such-barrier')\n"),
            "builtins.FileNotFoundError");
}

TEST(SyncBindingTest, ConditionWaitersTimeOutOrTakeANotification) {
  EXPECT_EQ(run("import _mphost\nc = _mphost.SharedCondition(unlink=True)\n"
                "a = c.enlist()\nb = c.enlist()\nn = c.notify(1)\n"
                "result = (n, c.wait(a, 0), c.wait(b, 0.01), c.waiting, a.active)\n",
                "result"),
            "(1, True, False, 0, False)");
}

}  // namespace
