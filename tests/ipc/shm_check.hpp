#pragma once
// Test fixture for the IPC tests: every shared object a test creates is named
// with test_prefix(), and after each test nothing with that prefix may be
// left in /dev/shm. Leftovers fail the test and are removed, so one leaking
// test does not poison the next.

#include <dirent.h>
#include <signal.h>
#include <sys/wait.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "mphost/ipc/segment.hpp"

namespace mphost::ipc::testing {

// Fixed at start-up, so forked children use their parent's prefix.
inline const std::string& test_prefix() {
  static const std::string prefix = "mphost-t" + std::to_string(::getpid()) + "-";
  return prefix;
}

inline std::vector<std::string> shm_entries(const std::string& prefix) {
  std::vector<std::string> found;
  if (DIR* dir = ::opendir("/dev/shm")) {
    while (dirent* e = ::readdir(dir)) {
      if (std::strncmp(e->d_name, prefix.c_str(), prefix.size()) == 0) found.emplace_back(e->d_name);
    }
    ::closedir(dir);
  }
  return found;
}

inline bool shm_exists(const std::string& name) {
  const std::string path = "/dev/shm/" + (name[0] == '/' ? name.substr(1) : name);
  return ::access(path.c_str(), F_OK) == 0;
}

class shm_checked_test : public ::testing::Test {
 protected:
  void SetUp() override { (void)test_prefix(); }
  void TearDown() override {
    for (const auto& name : shm_entries(test_prefix())) {
      ADD_FAILURE() << "shared memory left behind: /dev/shm/" << name;
      segment::remove(name);
    }
  }
};

// Removes a name when the scope ends, also when an assertion returns early.
class name_guard {
 public:
  explicit name_guard(std::string name = {}) : name_(std::move(name)) {}
  ~name_guard() {
    if (!name_.empty()) remove_(name_);
  }
  // Removes the current name (if any) and guards `name` instead.
  void set(std::string name, bool (*remove)(const std::string&) noexcept = &segment::remove) {
    if (!name_.empty()) remove_(name_);
    name_ = std::move(name);
    remove_ = remove;
  }
  name_guard(const name_guard&) = delete;
  name_guard& operator=(const name_guard&) = delete;

 private:
  std::string name_;
  bool (*remove_)(const std::string&) noexcept = &segment::remove;
};

// A shm_checked_test that hands out fresh names under test_prefix() and
// removes each one when the test ends, whatever it left behind.
class named_shm_test : public shm_checked_test {
 protected:
  std::string fresh_name(const char* tag) {
    std::string name = test_prefix() + tag + std::to_string(counter_++);
    guards_.emplace_back(std::make_unique<name_guard>(name));
    return name;
  }
  void TearDown() override {
    guards_.clear();
    shm_checked_test::TearDown();
  }

 private:
  int counter_ = 0;
  std::vector<std::unique_ptr<name_guard>> guards_;
};

// Kills and reaps a forked child when the scope ends, unless release()d:
// a test that fails half-way leaves no process behind.
class child_guard {
 public:
  explicit child_guard(pid_t pid) : pid_(pid) {}
  ~child_guard() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      int status = 0;
      ::waitpid(pid_, &status, 0);
    }
  }
  pid_t release() {
    const pid_t p = pid_;
    pid_ = -1;
    return p;
  }
  child_guard(const child_guard&) = delete;
  child_guard& operator=(const child_guard&) = delete;

 private:
  pid_t pid_;
};

}  // namespace mphost::ipc::testing
