// The collectives: which bytes go to which neighbour in which step.
//
// - 2 ranks: one full-duplex exchange; each piece is reduced the moment it lands,
//   in rank order (x0 (op) x1) on both ranks, so their results are bit-identical
//   to each other and to MLX's own `a + b`, whatever NaN payload or signed zero.
// - N >= 3: ring reduce-scatter then all-gather, both directions at once (the
//   first half of the buffer travels right, the second left).  Chunks sent are
//   never written again within the operation, so a re-send finds them intact.
// Buffers go as pieces of about 1 MiB (at most 8 per buffer), which take turns
// over the stripes of a link.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "link.hpp"
#include "op.hpp"

namespace boltring {

// Buffers reused across operations (grown, never shrunk): no allocation per call.
struct Scratch {
  std::vector<char> a, b, c;
  static char* at_least(std::vector<char>& v, uint64_t n) {
    if (v.size() < n) v.resize(n);
    return v.data();
  }
};

struct Ctx {
  int rank = 0, size = 1;
  const std::map<int, Link*>* links = nullptr;  // ring neighbours by rank
  Scratch* scratch = nullptr;
  Arena* arena = nullptr;
  int64_t deadline_ns = 0;
  int wake_fd = -1;
  const std::atomic<bool>* interrupted = nullptr;
  bool crc = false;  // CRC32C on the DATA frames sent
  Link* link(int peer) const;
};

// `in` and `out` may be the same buffer (MLX donated the input).
void all_reduce(Ctx& c, const char* in, char* out, uint64_t nbytes, int dtype, int op);
void all_gather(Ctx& c, const char* in, char* out, uint64_t nbytes, int dtype);
void sum_scatter(Ctx& c, const char* in, char* out, uint64_t in_nbytes, int dtype);
// `hold` keeps `in` alive and unchanged until the peer has it (see Op::send).
void send(Ctx& c, const char* in, uint64_t nbytes, int dtype, int dst, std::shared_ptr<const void> hold);
void recv(Ctx& c, char* out, uint64_t nbytes, int dtype, int src);

size_t item_size(int dtype);

}  // namespace boltring
