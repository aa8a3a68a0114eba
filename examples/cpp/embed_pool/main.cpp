// An application with its own embedded CPython whose multiprocessing works:
// the script's Pool starts spawn workers as the installed `mphost`
// executable with this application's sys.path.
#include <mphost/embed/application.hpp>

#include <cstdio>
#include <exception>
#include <string>

int main(int argc, char** argv) {
  const std::string script = argc > 1 ? argv[1] : EMBED_POOL_SCRIPT;
  try {
    mphost::embed::application_settings settings;
    settings.program_name = "embed_pool";
    settings.argv = {script};
    settings.isolated = true;          // no PYTHON* variables, no user site
    settings.start_method = "spawn";   // and fork of this application stays refused
    mphost::embed::interpreter python(settings);
    std::printf("embedding %s; children start as %s\n", script.c_str(), python.mphost_executable().c_str());
    std::fflush(stdout);
    const int status = python.run_file(script);
    std::printf("cpu_count from C++: %s\n", python.call("os:cpu_count").c_str());
    return status;
  } catch (const mphost::embed::python_error& e) {
    std::fprintf(stderr, "%s", e.traceback().c_str());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "embed_pool: %s\n", e.what());
    return 1;
  }
}
