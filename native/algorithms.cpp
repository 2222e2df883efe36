#include "algorithms.hpp"

#include <algorithm>
#include <cstring>
#include <utility>

#include "op.hpp"

#ifdef __linux__
#include <sys/mman.h>
#endif

namespace boltring {

namespace {

constexpr uint64_t kPiece = 1 << 20;
constexpr uint64_t kMaxPieces = 8;

using Range = std::pair<uint64_t, uint64_t>;

// Part `i` of `n` things cut into `parts` nearly equal parts (the first n % parts
// one longer): both ends cut a buffer the same way.
Range part(uint64_t n, uint64_t parts, uint64_t i) {
  uint64_t q = n / parts, r = n % parts;
  uint64_t start = i * q + std::min(i, r);
  return {start, start + q + (i < r ? 1 : 0)};
}

// Byte ranges cutting `nbytes` into frames of about kPiece bytes, on element boundaries.
struct Pieces {
  Range r[kMaxPieces];
  uint64_t n = 0;
  const Range* begin() const { return r; }
  const Range* end() const { return r + n; }
};

Pieces pieces(uint64_t nbytes, size_t item) {
  Pieces p;
  p.n = std::max<uint64_t>(1, std::min(kMaxPieces, nbytes / kPiece));
  for (uint64_t i = 0; i < p.n; i++) {
    auto [a, b] = part(nbytes / item, p.n, i);
    p.r[i] = {a * item, b * item};
  }
  return p;
}

// Whether a (op) b and b (op) a can differ in their bits (MLX's rules: which
// NaN payload a float sum keeps, which of +0/-0 or of two NaNs max/min return).
bool order_matters(int dtype, int op) {
  bool wide_float = dtype == BOLT_DT_F32 || dtype == BOLT_DT_F64 || dtype == BOLT_DT_C64;
  return wide_float || (op != BOLT_SUM && (dtype == BOLT_DT_F16 || dtype == BOLT_DT_BF16));
}

void reduce_into(Frame* r, int op, int dtype, char* dst, const char* src, size_t item) {
  r->red_op = op;
  r->red_dtype = dtype;
  r->red_dst = dst;
  r->red_src = src;
  r->red_count = r->len / item;
}

Op make_op(Ctx& c, uint64_t nbytes, bool matched = true) {
  return Op(*c.arena, nbytes, matched, c.deadline_ns, c.wake_fd, c.interrupted, c.crc);
}

void add_sends(Op& op, Link* l, const char* buf, uint64_t len, int dt) {
  for (auto [a, b] : pieces(len, item_size(dt))) op.send(l, buf + a, b - a, static_cast<uint8_t>(dt));
}

// Receive `len` bytes into `buf`; with `dst`, reduce each piece into it as it lands.
void add_recvs(Op& op, Link* l, char* buf, uint64_t len, int dt, int rop = -1, char* dst = nullptr) {
  size_t item = item_size(dt);
  for (auto [a, b] : pieces(len, item)) {
    Frame* r = op.recv(l, buf + a, b - a, static_cast<uint8_t>(dt));
    if (dst != nullptr) reduce_into(r, rop, dt, dst + a, buf + a, item);
  }
}

void pair_all_reduce(Ctx& c, const char* in, char* out, uint64_t n, int dt, int rop) {
  Link* l = c.link(1 - c.rank);
  Op op = make_op(c, n);
  const bool same = in == out, order = order_matters(dt, rop);
  const size_t item = item_size(dt);
  char* scratch = (same || (c.rank == 0 && order)) ? Scratch::at_least(c.scratch->a, n) : nullptr;
  if (c.rank == 0 && order && !same) std::memcpy(out, in, n);  // out = x0, then x0 (op) x1
  for (auto [a, b] : pieces(n, item)) {
    uint64_t len = b - a;
    Frame* s = op.send(l, in + a, len, static_cast<uint8_t>(dt));
    Frame* r;
    if (c.rank == 0 && !same && !order) {  // the order does not matter: x1 lands in out
      r = op.recv(l, out + a, len, static_cast<uint8_t>(dt));
      reduce_into(r, rop, dt, out + a, in + a, item);
    } else if (c.rank == 0) {  // out holds x0
      r = op.recv(l, scratch + a, len, static_cast<uint8_t>(dt));
      reduce_into(r, rop, dt, out + a, scratch + a, item);
    } else if (!same) {  // rank 1: x0 lands in out, then x0 (op) x1
      r = op.recv(l, out + a, len, static_cast<uint8_t>(dt));
      reduce_into(r, rop, dt, out + a, in + a, item);
    } else if (!order) {
      r = op.recv(l, scratch + a, len, static_cast<uint8_t>(dt));
      reduce_into(r, rop, dt, out + a, scratch + a, item);
    } else {  // rank 1 in place, order matters: x0 (op) x1 in the scratch, then copied
      r = op.recv(l, scratch + a, len, static_cast<uint8_t>(dt));
      reduce_into(r, rop, dt, scratch + a, out + a, item);
      r->copy_dst = out + a;
    }
    if (same && !op.small()) {  // the reduce rewrites what this send reads
      s->rewritten_by = r;
      r->waits_for = s;
    }
  }
  op.step();
  op.finish();
}

void ring_all_reduce(Ctx& c, const char* in, char* out, uint64_t nbytes, int dt, int rop) {
  const int n = c.size, r = c.rank;
  Link *right = c.link((r + 1) % n), *left = c.link((r + n - 1) % n);
  const size_t item = item_size(dt);
  char* acc = Scratch::at_least(c.scratch->a, nbytes);
  std::memcpy(acc, in, nbytes);
  const uint64_t count = nbytes / item, half = count / 2, parts = static_cast<uint64_t>(n);
  // chunk i of direction 0 (the first half of the buffer, travelling right) or 1
  auto at = [&](int d, int i) {
    uint64_t k = static_cast<uint64_t>(((i % n) + n) % n);
    auto [a, b] = d == 0 ? part(half, parts, k) : part(count - half, parts, k);
    uint64_t base = d == 0 ? 0 : half;
    return Range{(base + a) * item, (base + b) * item};
  };
  const uint64_t widest = (count - half + parts - 1) / parts * item;  // chunk 0 of direction 1 is the longest
  char* tmp = Scratch::at_least(c.scratch->b, 2 * widest);
  Op op = make_op(c, nbytes);
  for (int s = 0; s < n - 1; s++) {  // reduce-scatter, reduced into acc as pieces land
    auto [a0, b0] = at(0, r - s);
    auto [i0, j0] = at(0, r - s - 1);
    auto [a1, b1] = at(1, r + s);
    auto [i1, j1] = at(1, r + s + 1);
    add_sends(op, right, acc + a0, b0 - a0, dt);
    add_recvs(op, left, tmp, j0 - i0, dt, rop, acc + i0);
    add_sends(op, left, acc + a1, b1 - a1, dt);
    add_recvs(op, right, tmp + widest, j1 - i1, dt, rop, acc + i1);
    op.step();
  }
  for (auto [d, own] : {std::pair{0, r + 1}, std::pair{1, r - 1}}) {  // fully reduced here
    auto [a, b] = at(d, own);
    std::memcpy(out + a, acc + a, b - a);
  }
  for (int s = 0; s < n - 1; s++) {  // all-gather
    auto [a0, b0] = at(0, r + 1 - s);
    auto [i0, j0] = at(0, r - s);
    auto [a1, b1] = at(1, r - 1 + s);
    auto [i1, j1] = at(1, r + s);
    add_sends(op, right, out + a0, b0 - a0, dt);
    add_recvs(op, left, out + i0, j0 - i0, dt);
    add_sends(op, left, out + a1, b1 - a1, dt);
    add_recvs(op, right, out + i1, j1 - i1, dt);
    op.step();
  }
  op.finish();
}

// A large result MLX has just allocated is fresh memory on Linux (its allocator
// hands big blocks back to the OS), and a trap per 4 KiB page while the bytes land
// cost 64 MiB all_sums a third of their time: ask for huge pages (where the system
// allows them on request) before the first byte is written.
void prefer_huge_pages(char* out, uint64_t n) {
#ifdef __linux__
  constexpr uintptr_t kHuge = 2u << 20;
  if (n < 4 * kHuge) return;
  uintptr_t a = (reinterpret_cast<uintptr_t>(out) + kHuge - 1) & ~(kHuge - 1);
  uintptr_t b = (reinterpret_cast<uintptr_t>(out) + n) & ~(kHuge - 1);
  if (b > a) ::madvise(reinterpret_cast<void*>(a), b - a, MADV_HUGEPAGE);  // advice: failure is harmless
#else
  (void)out;
  (void)n;
#endif
}

}  // namespace

size_t item_size(int dtype) { return bolt_dtype_size(dtype); }

Link* Ctx::link(int peer) const {
  auto it = links->find(peer);
  if (it == links->end())
    throw Failure(Fail::Config, "rank " + std::to_string(peer) + " is not a ring neighbour of rank " +
                                    std::to_string(rank) + "; boltring connects ring neighbours");
  return it->second;
}

void all_reduce(Ctx& c, const char* in, char* out, uint64_t nbytes, int dtype, int op) {
  if (c.size == 1 || nbytes == 0) {
    if (in != out && nbytes) std::memcpy(out, in, nbytes);
    return;
  }
  if (in != out) prefer_huge_pages(out, nbytes);
  if (c.size == 2)
    pair_all_reduce(c, in, out, nbytes, dtype, op);
  else
    ring_all_reduce(c, in, out, nbytes, dtype, op);
}

void all_gather(Ctx& c, const char* in, char* out, uint64_t blk, int dt) {
  const int n = c.size, r = c.rank;
  if (n > 1) prefer_huge_pages(out, static_cast<uint64_t>(n) * blk);
  if (blk) std::memcpy(out + static_cast<uint64_t>(r) * blk, in, blk);
  if (n == 1 || blk == 0) return;
  Link *right = c.link((r + 1) % n), *left = c.link((r + n - 1) % n);
  auto block = [&](int i) { return out + static_cast<uint64_t>(((i % n) + n) % n) * blk; };
  Op op = make_op(c, blk);
  for (int s = 0; s < n - 1; s++) {
    add_sends(op, right, block(r - s), blk, dt);
    add_recvs(op, left, block(r - s - 1), blk, dt);
    op.step();
  }
  op.finish();
}

void sum_scatter(Ctx& c, const char* in, char* out, uint64_t in_nbytes, int dt) {
  const int n = c.size, r = c.rank;
  const uint64_t blk = in_nbytes / static_cast<uint64_t>(n);
  if (n == 1 || blk == 0) {
    if (blk) std::memcpy(out, in, blk);
    return;
  }
  if (n > 2) {  // the whole sum, then this rank's rows (twice the traffic of a ring reduce-scatter)
    char* sum = Scratch::at_least(c.scratch->c, in_nbytes);
    ring_all_reduce(c, in, sum, in_nbytes, dt, BOLT_SUM);
    std::memcpy(out, sum + static_cast<uint64_t>(r) * blk, blk);
    return;
  }
  Link* l = c.link(1 - r);
  Op op = make_op(c, in_nbytes);
  add_sends(op, l, in + static_cast<uint64_t>(1 - r) * blk, blk, dt);
  if (r == 0) {  // out = x0's rows, then x0 (+) x1
    std::memcpy(out, in, blk);
    add_recvs(op, l, Scratch::at_least(c.scratch->a, blk), blk, dt, BOLT_SUM, out);
  } else {  // x0's rows land in out: out (+)= x1's rows
    size_t item = item_size(dt);
    for (auto [a, b] : pieces(blk, item)) {
      Frame* f = op.recv(l, out + a, b - a, static_cast<uint8_t>(dt));
      reduce_into(f, BOLT_SUM, dt, out + a, in + blk + a, item);
    }
  }
  op.step();
  op.finish();
}

void send(Ctx& c, const char* in, uint64_t nbytes, int dt, int dst, std::shared_ptr<const void> hold) {
  Link* l = c.link(dst);
  if (nbytes == 0) return;
  Op op = make_op(c, nbytes, false);
  for (auto [a, b] : pieces(nbytes, item_size(dt))) op.send(l, in + a, b - a, static_cast<uint8_t>(dt), hold);
  op.step();
  op.finish();
}

void recv(Ctx& c, char* out, uint64_t nbytes, int dt, int src) {
  Link* l = c.link(src);
  if (nbytes == 0) return;
  prefer_huge_pages(out, nbytes);
  Op op = make_op(c, nbytes, false);
  add_recvs(op, l, out, nbytes, dt);
  op.step();
  op.finish();
}

}  // namespace boltring
