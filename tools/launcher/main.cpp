// The `mphost` executable: python3's command line with mphost's runtime.
#include "mphost/embed/interpreter.hpp"

int main(int argc, char** argv) { return mphost::embed::launcher_main(argc, argv); }
