#pragma once
// A waitable descriptor per child: it becomes readable when the child ends,
// so select/poll/multiprocessing.connection.wait can watch process exits
// next to pipes and sockets.
//
// mphost uses a pidfd (Linux 5.3+). The pidfd does not reap the child and
// does not let anyone else reap it; closing it is the owner's job.

#include <sys/types.h>

namespace mphost::runtime {

// True when the kernel offers pidfd_open(2).
bool pidfd_supported() noexcept;

// Opens a close-on-exec pidfd for `pid`. Throws std::system_error (ESRCH when
// the process is already gone and reaped, ENOSYS without kernel support).
int open_process_sentinel(pid_t pid);

// True when `fd` is readable now, i.e. the process it watches has ended.
bool sentinel_ready(int fd) noexcept;

}  // namespace mphost::runtime
