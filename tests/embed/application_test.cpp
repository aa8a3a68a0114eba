// The embedding API (mphost/embed/application.hpp) as an application uses
// it, linked against the shared libmphost_embed.so that is installed.
//
// A process holds at most one interpreter, so each test runs this same
// executable again as `--scenario NAME ...` under `timeout`: the scenario
// creates the interpreter with its own settings, and the test checks its
// exit status and output.
#include <gtest/gtest.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "mphost/embed/application.hpp"

namespace {

namespace fs = std::filesystem;
using mphost::embed::application_settings;
using mphost::embed::interpreter;
using mphost::embed::python_error;

const std::string programs = MPHOST_APPLICATION_PROGRAMS;  // tests/embed/application
std::string self;

struct outcome {
  int status;
  std::string output;
};

// Runs this executable in scenario mode; a hang is killed after `seconds`.
outcome run_scenario(const std::vector<std::string>& words, int seconds = 120) {
  std::string command = "timeout -k 5 " + std::to_string(seconds) + " '" + self + "' --scenario";
  for (const std::string& word : words) command += " '" + word + "'";
  command += " 2>&1";
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return {-1, "popen failed"};
  std::string output;
  std::array<char, 4096> chunk{};
  while (std::fgets(chunk.data(), chunk.size(), pipe) != nullptr) output += chunk.data();
  const int status = ::pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), output};
}

// Names this scenario's process tree left in /dev/shm (its registry is
// named after the root's pid).
std::vector<std::string> leftovers_of(pid_t root) {
  std::vector<std::string> names;
  const std::string mark = "-" + std::to_string(root) + "-";
  for (const auto& entry : fs::directory_iterator("/dev/shm"))
    if (entry.path().filename().string().find(mark) != std::string::npos)
      names.push_back(entry.path().filename());
  return names;
}

application_settings settings_for(const std::string& method, bool allow_fork) {
  application_settings settings;
  settings.program_name = "application_test";
  settings.argv = {programs + "/multiprocessing_program.py", method};
  settings.python_path = {programs + "/lib"};
  settings.isolated = true;
  settings.start_method = method;
  settings.allow_fork = allow_fork;
  return settings;
}

// -- scenarios: each runs in a process of its own ---------------------------

int program_scenario(const std::string& method) {
  application_settings settings = settings_for(method, method == "fork");
  interpreter python(settings);
  std::printf("root %d\n", static_cast<int>(::getpid()));
  std::fflush(stdout);
  return python.run_file(settings.argv[0]);
}

int refused_fork_scenario() {
  interpreter python(settings_for("spawn", false));
  python.exec(
      "import multiprocessing, os\n"
      "try:\n"
      "    multiprocessing.get_context('fork').Process(target=os.getpid).start()\n"
      "except ValueError as e:\n"
      "    refused = str(e)\n"
      "else:\n"
      "    refused = ''\n"
      "p = multiprocessing.Process(target=os.getpid)\n"
      "p.start(); p.join(60)\n");
  std::printf("refused: %s\nspawn exit code: %s\n", python.eval("refused").c_str(),
              python.eval("p.exitcode").c_str());
  return 0;
}

int errors_scenario() {
  interpreter python(settings_for("spawn", false));
  int checks = 0;
  try {
    python.exec("def fail():\n    raise KeyError('missing')\nfail()\n");
  } catch (const python_error& e) {
    checks += e.type_name() == "KeyError" && e.message() == "'missing'" &&
              e.traceback().find("in fail") != std::string::npos &&
              e.traceback().find("KeyError: 'missing'") != std::string::npos;
  }
  try {
    python.exec("import json\njson.loads('{')\n");
  } catch (const python_error& e) {
    checks += e.type_name() == "json.decoder.JSONDecodeError";
  }
  try {
    python.call("embed_helper:cube");  // missing argument
  } catch (const python_error& e) {
    checks += e.type_name() == "TypeError";
  }
  try {
    python.call("no_such_module_here:f");
  } catch (const python_error& e) {
    checks += e.type_name() == "ModuleNotFoundError";
  }
  try {
    python.call("embed_helper");
  } catch (const std::invalid_argument&) {
    ++checks;
  }
  return checks;
}

int calls_scenario() {
  interpreter python(settings_for("spawn", false));
  std::printf("call: %s\n", python.call("os.path:join", {"a", "b"}).c_str());
  std::printf("dotted: %s\n", python.call("os:path.basename", {"/x/y.py"}).c_str());
  std::printf("eval: %s\n", python.eval("sorted({3, 1, 2})").c_str());
  std::printf("executable: %s\n", python.eval("__import__('sys').executable").c_str());
  std::printf("mp: %s\n", python.eval("__import__('multiprocessing').__file__").c_str());
  std::printf("flags: %s\n", python.eval("__import__('sys').flags.isolated").c_str());
  const std::string script = fs::temp_directory_path() / ("exit-" + std::to_string(::getpid()) + ".py");
  std::FILE* file = std::fopen(script.c_str(), "w");
  std::fputs("import sys\nsys.exit(7)\n", file);
  std::fclose(file);
  std::printf("exit: %d\n", python.run_file(script));
  std::remove(script.c_str());
  // Any thread may call in; each takes the GIL for its call.
  std::vector<std::thread> threads;
  std::vector<int> right(4, 0);
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&python, &right, t] {
      for (int i = 0; i < 200; ++i) {
        const std::string n = std::to_string(t * 1000 + i);
        right[t] += python.call("operator:add", {"n=", n}) == "n=" + n;
        right[t] += python.eval(std::to_string(t) + " * 1000 + " + std::to_string(i)) == n;
      }
    });
  for (std::thread& thread : threads) thread.join();
  std::printf("threads: %d\n", right[0] + right[1] + right[2] + right[3]);
  try {
    interpreter second(settings_for("spawn", false));
    std::printf("second: constructed\n");
  } catch (const std::logic_error&) {
    std::printf("second: refused\n");
  }
  return 0;
}

// Several of the shim's own test files, run by pytest inside this
// application, under every start method (fork allowed here).
int shim_tests_scenario(const std::vector<std::string>& files) {
  application_settings settings = settings_for("spawn", true);
  settings.argv = {"pytest"};
  interpreter python(settings);
  std::string arguments = "['-q', '-p', 'no:cacheprovider'";
  for (const std::string& file : files) arguments += ", '" + file + "'";
  arguments += "]";
  python.exec("import pytest\nstatus = int(pytest.main(" + arguments + "))\n");
  return std::stoi(python.eval("status"));
}

int run_scenario_here(int argc, char** argv) {
  const std::string name = argv[2];
  try {
    if (name == "program") return program_scenario(argv[3]);
    if (name == "refused_fork") return refused_fork_scenario();
    if (name == "errors") return errors_scenario();
    if (name == "calls") return calls_scenario();
    if (name == "shim_tests") return shim_tests_scenario(std::vector<std::string>(argv + 3, argv + argc));
  } catch (const python_error& e) {
    std::fprintf(stderr, "%s", e.traceback().c_str());
    return 100;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "scenario %s: %s\n", name.c_str(), e.what());
    return 101;
  }
  std::fprintf(stderr, "unknown scenario %s\n", name.c_str());
  return 102;
}

// -- the tests ---------------------------------------------------------------

class EmbeddedMultiprocessing : public ::testing::TestWithParam<const char*> {};

TEST_P(EmbeddedMultiprocessing, PoolProcessQueueAndManagerWork) {
  const outcome result = run_scenario({"program", GetParam()});
  ASSERT_EQ(result.status, 0) << result.output;
  EXPECT_NE(result.output.find(std::string("OK ") + GetParam()), std::string::npos) << result.output;
  const std::string expected = std::string(GetParam()) == "fork" ? "run mphost_application_tests" : "run mphost";
  EXPECT_NE(result.output.find(expected), std::string::npos) << result.output;
  const auto root = result.output.find("root ");
  ASSERT_NE(root, std::string::npos);
  EXPECT_TRUE(leftovers_of(std::stoi(result.output.substr(root + 5))).empty());
}

INSTANTIATE_TEST_SUITE_P(StartMethods, EmbeddedMultiprocessing, ::testing::Values("spawn", "forkserver", "fork"));

TEST(EmbeddedApplication, ForkIsRefusedUnlessAllowed) {
  const outcome result = run_scenario({"refused_fork"});
  ASSERT_EQ(result.status, 0) << result.output;
  EXPECT_NE(result.output.find("refused: the fork start method is not allowed in this application"),
            std::string::npos)
      << result.output;
  EXPECT_NE(result.output.find("spawn exit code: 0"), std::string::npos) << result.output;
}

TEST(EmbeddedApplication, PythonErrorsCarryTypeMessageAndTraceback) {
  const outcome result = run_scenario({"errors"});
  EXPECT_EQ(result.status, 5) << result.output;
}

TEST(EmbeddedApplication, CallsEvalRunFileAndOneInterpreterPerProcess) {
  const outcome result = run_scenario({"calls"});
  ASSERT_EQ(result.status, 0) << result.output;
  for (const char* line : {"call: a/b\n", "dotted: y.py\n", "eval: [1, 2, 3]\n", "flags: 1\n", "exit: 7\n",
                           "threads: 1600\n", "second: refused\n"})
    EXPECT_NE(result.output.find(line), std::string::npos) << line << result.output;
  EXPECT_NE(result.output.find("/bin/mphost\n"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("share/mphost/python/multiprocessing/__init__.py"), std::string::npos)
      << result.output;
}

TEST(EmbeddedApplication, ShimTestsPassInsideTheApplication) {
  const std::string shim = MPHOST_SHIM_TESTS;
  const outcome result =
      run_scenario({"shim_tests", shim + "/test_context.py", shim + "/test_queues_spawn.py",
                    shim + "/test_queues_forkserver.py", shim + "/test_queues_fork.py", shim + "/test_process_fork.py"},
                   240);
  EXPECT_EQ(result.status, 0) << result.output;
  EXPECT_NE(result.output.find(" passed"), std::string::npos) << result.output;
  EXPECT_EQ(result.output.find(" failed"), std::string::npos) << result.output;
}

}  // namespace

int main(int argc, char** argv) {
  self = fs::canonical("/proc/self/exe");
  if (argc >= 3 && std::string(argv[1]) == "--scenario") return run_scenario_here(argc, argv);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
