#include "failure.hpp"

#include <cstring>

namespace boltring {

const char* kind_name(Fail k) {
  switch (k) {
    case Fail::PeerLost: return "PeerLost";
    case Fail::PeerClosed: return "PeerClosed";
    case Fail::LinkDown: return "LinkDown";
    case Fail::Timeout: return "Timeout";
    case Fail::Protocol: return "ProtocolError";
    case Fail::Config: return "ConfigError";
    case Fail::Auth: return "AuthError";
    case Fail::Interrupted: return "Interrupted";
  }
  return "PeerLost";
}

std::string Failure::text() const {
  std::string w = what();
  auto end = w.find("] ");
  return end == std::string::npos ? w : w.substr(end + 2);
}

Verdict classify(int code) {
  switch (code) {
    case BOLT_EGOODBYE:
      return Verdict::Goodbye;
    case BOLT_EMAGIC:
    case BOLT_EVERSION:
    case BOLT_EKIND:
    case BOLT_EDTYPE:
    case BOLT_ELENGTH:
    case BOLT_ESEQ:
    case BOLT_ECRC:
    case BOLT_EFLAGS:
      return Verdict::Protocol;
    default:  // EOF, truncation, resets, a vanished interface: the path, not the peer's words
      return Verdict::PathBroken;
  }
}

std::string describe(int code) {
  switch (code) {
    case BOLT_EMAGIC: return "bad magic (not a boltring frame)";
    case BOLT_EVERSION: return "protocol version mismatch";
    case BOLT_EKIND: return "unexpected frame kind";
    case BOLT_EDTYPE: return "unexpected dtype";
    case BOLT_ELENGTH: return "unexpected frame length";
    case BOLT_ESEQ: return "unexpected sequence number (desync)";
    case BOLT_ECRC: return "payload CRC32C mismatch";
    case BOLT_EFLAGS: return "unknown header flags";
    case BOLT_ECLOSED: return "the connection was closed";
    case BOLT_EGOODBYE: return "the peer said GOODBYE";
    case BOLT_ETRUNC: return "truncated frame (EOF inside a frame)";
    case BOLT_ENOIF: return "the interface is missing";
    default:
      if (code < 0 && code > -4096) return std::string(std::strerror(-code)) + " (errno " + std::to_string(-code) + ")";
      return "error " + std::to_string(code);
  }
}

namespace {
const char* kind_of(unsigned k) {
  static const char* names[] = {"?", "HELLO", "AUTH", "DATA", "PING", "PONG", "SWITCH", "GOODBYE", "RESUME", "ACK"};
  return k <= BOLT_KIND_MAX ? names[k] : "?";
}
}  // namespace

std::string describe(int code, const bolt_op& op) {
  std::string s = describe(code);
  switch (code) {
    case BOLT_ETRUNC: return s + " (after " + std::to_string(op.done) + " bytes)";
    case BOLT_ELENGTH:
      return s + " (expected " + (op.exact_len ? "" : "at most ") + std::to_string(op.len) +
             " bytes, frame says " + std::to_string(op.got.length) + ")";
    case BOLT_ESEQ:
      return s + " (expected sequence " + std::to_string(op.seq) + ", got " + std::to_string(op.got.seq) + ")";
    case BOLT_EDTYPE:
      return s + " (expected dtype code " + std::to_string(op.dtype) + ", got " + std::to_string(op.got.dtype) + ")";
    case BOLT_EKIND:
      return s + " (expected " + kind_of(op.kind) + ", got " + kind_of(op.got.kind) + ")";
    default: return s;
  }
}

}  // namespace boltring
