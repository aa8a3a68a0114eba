#pragma once
// The embedded interpreter's lifecycle.
//
// launcher_main() is the whole `mphost` program: it parses python3's command
// line with the interpreter's own parser (PyConfig), registers the `_mphost`
// and `_multiprocessing` modules, puts the shim package first on sys.path so
// that `import multiprocessing` is mphost's, and runs __main__ exactly as
// python3 does (Py_RunMain: same exit codes, same handling of SystemExit and
// KeyboardInterrupt).
//
// Child mode: `mphost --mphost-child FD [interpreter flags]` is how every
// spawned or forkserver-started process of a program begins. The interpreter
// is initialised with the flags the parent passed, then the shim's child
// entry point reads its instructions from the handshake descriptor FD.

namespace mphost::embed {

// The flag that selects child mode; never a python3 option.
inline constexpr const char* child_mode_flag = "--mphost-child";

int launcher_main(int argc, char** argv);

}  // namespace mphost::embed
