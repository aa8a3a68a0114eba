#pragma once
// The single place where Python.h enters the project. Only embed/ includes
// this header; the core (ipc/, runtime/) never sees Python.

#define PY_SSIZE_T_CLEAN
#include <Python.h>

static_assert(PY_MAJOR_VERSION == 3 && PY_MINOR_VERSION == 11,
              "mphost embeds CPython 3.11 (Debian's libpython3.11)");
