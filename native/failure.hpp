// A failure of the data plane, typed so that Python sees boltring's own
// exception (module.cpp maps each kind to a class of boltring.errors).
#pragma once

#include <stdexcept>
#include <string>

namespace boltring {

enum class Fail {
  PeerLost = 1,
  PeerClosed = 2,
  LinkDown = 3,
  Timeout = 4,
  Protocol = 5,
  Config = 6,
  Auth = 7,
  Interrupted = 8,
};

struct Failure : std::runtime_error {
  Fail kind;
  int code;  // the C core's code (-errno or BOLT_E*), 0 when none
  Failure(Fail k, const std::string& what, int c = 0)
      : std::runtime_error(what), kind(k), code(c) {}
};

// What a C code from a transfer means for the path it came from.
enum class Verdict { PathBroken, Protocol, Goodbye };
Verdict classify(int code);
std::string describe(int code);

}  // namespace boltring
