// A failure of the data plane, typed so that Python sees boltring's own
// exception (module.cpp maps each kind to a class of boltring.errors).
#pragma once

#include <stdexcept>
#include <string>

extern "C" {
#include "bolt.h"
}

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

// MLX keeps only the message of an exception thrown in a task and raises it as
// a plain RuntimeError at evaluation, so the kind travels in the message:
// "[boltring:<kind>] <text>"; module.cpp's translator turns it back into the
// boltring.errors class of that name.
const char* kind_name(Fail k);

struct Failure : std::runtime_error {
  Fail kind;
  int code;  // the C core's code (-errno or BOLT_E*), 0 when none
  Failure(Fail k, const std::string& what, int c = 0)
      : std::runtime_error(std::string("[boltring:") + kind_name(k) + "] " + what), kind(k), code(c) {}
  // the text without its kind tag
  std::string text() const;
};

// What a C code from a transfer means for the path it came from.
enum class Verdict { PathBroken, Protocol, Goodbye };
Verdict classify(int code);
std::string describe(int code);
// describe(), with what the receive expected and got where that says more.
std::string describe(int code, const bolt_op& op);

}  // namespace boltring
