#pragma once
// Start-up steps shared by the launcher (interpreter.cpp) and the embedding
// API (application.cpp): the built-in modules and the shim on sys.path.

#include <string>

namespace mphost::embed::startup {

// Registers `_mphost` and `_multiprocessing` as built-in modules; before
// the interpreter is initialised. Built-in modules win over lib-dynload, so
// the stdlib's _multiprocessing extension is never loaded.
bool register_builtin_modules();

// The shim directory of an mphost executable, found relative to it in build
// and installed trees alike (<prefix>/bin/mphost ->
// <prefix>/share/mphost/python); empty when it holds no multiprocessing
// package.
std::string shim_directory(const std::string& executable);

// Inserts `directory` at sys.path[0]; with the GIL held. On failure a
// Python exception is set.
bool put_first_on_sys_path(const std::string& directory);

}  // namespace mphost::embed::startup
