#pragma once
// Unguessable names and owner-only places for the resources of a program tree.
//
// Every socket, segment and directory that mphost creates is named with
// random bytes from the kernel and created owner-only: files 0600,
// directories 0700. Nothing here is in the abstract socket namespace.

#include <string>

namespace mphost::runtime {

// `bytes` random bytes from getrandom(2), hex-encoded (2*bytes characters).
std::string random_hex(std::size_t bytes);

// Creates a fresh 0700 directory named `<prefix><pid>-<random>` under
// $TMPDIR (or /tmp), where pid is the creating process, and returns its
// absolute path. Throws std::system_error.
std::string make_private_directory(const std::string& prefix);

// Removes the directories made by make_private_directory(prefix) whose
// creating process no longer exists and which belong to this user: what a
// program tree killed outright left behind. Returns how many it removed.
int sweep_orphaned_directories(const std::string& prefix) noexcept;

// Removes a directory created by make_private_directory and the files in it
// (not recursive beyond one level). Errors are ignored: used on clean-up paths.
void remove_private_directory(const std::string& path) noexcept;

}  // namespace mphost::runtime
