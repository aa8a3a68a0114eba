#pragma once
// Python's signal handlers, made known to the core's waits.
//
// CPython's C-level handler only records that a signal came; the Python
// handler runs later, in the main thread, when the interpreter looks
// (PyErr_CheckSignals). A wait of the core, asleep without the GIL, learns
// of the signal from EINTR only, and only if the kernel ran the handler in
// the waiting thread while it was inside the system call. The tap closes
// that gap: every signal that has a Python handler also notes itself to the
// core (ipc::note_signal, interrupt.hpp), once CPython's handler has
// recorded it, and blocking_call waits within an ipc::interrupt_watch.
//
// tap_python_signals()
//   Makes sure of that for this process, once: the C-level action of each
//   signal whose Python handler is a callable becomes the tap, which calls
//   the action it replaced (CPython's) and then notes the signal; and
//   _signal.signal, through which signal.signal installs every Python
//   handler, is wrapped so that it taps the signal it has just set. The
//   action keeps its mask and flags (SA_ONSTACK, SA_RESTART as
//   signal.siginterrupt set them); handlers that CPython resets (SIG_DFL,
//   SIG_IGN, at finalization) simply replace the tap. GIL held; never
//   raises: if something fails, the signals stay as they were and waits see
//   EINTR alone. Forked children inherit the taps; an interpreter started
//   after Py_FinalizeEx in the same process is tapped anew.
// is_signal_tap(sig)
//   Whether the C-level action of `sig` is the tap now (for tests).

namespace mphost::embed {

void tap_python_signals() noexcept;

bool is_signal_tap(int sig) noexcept;

}  // namespace mphost::embed
