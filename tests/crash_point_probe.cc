// A crash point in a tiny program, built with and without
// PASSERELLE_CRASH_POINTS, so tests/deploy_test.cc can check that the
// macro leaves nothing in a binary built without the option.
#include "common/crash_point.h"

int main(int argc, char** /*argv*/) {
  if (argc > 100) PASSERELLE_CRASH_POINT("probe.crash_point.compiled_in");
  return 0;
}
