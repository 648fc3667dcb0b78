// basewatch: the command line. All the work is in app/cli.cpp and the parts.
#include "app/cli.h"

int main(int argc, char** argv) { return bw::app::run_cli(argc, argv); }
