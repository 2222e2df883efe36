// One collective's frames, moved step by step over the links it touches, and
// mended when a path fails under it.
//
// Every frame has a sequence number per link and direction, assigned in program
// order, so both ends know every frame's number without saying it.  A frame
// rides stripe `seq % stripes` of the link's epoch.  When a link adopts a new
// epoch (its path failed, or a better one was staged) both ends exchange RESUME
// frames saying which frames they hold, and each sends again what the other
// lacks: from the operation's own buffers, or from copies kept of small
// operations.  Large operations end with an ACK each way instead, so nothing of
// them needs keeping once they return.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <vector>

extern "C" {
#include "bolt.h"
}

#include "link.hpp"

namespace boltring {

struct Frame {
  Link* link = nullptr;
  bool send = false;
  bool ack = false;  // an ACK frame (no payload, outside the DATA numbering)
  char* buf = nullptr;
  uint64_t len = 0;
  uint8_t dtype = 0;
  uint64_t seq = 0;
  // recv: reduce on arrival (dst = dst (op) src), then copy dst to copy_dst
  int red_op = -1;
  int red_dtype = 0;
  char* red_dst = nullptr;
  const char* red_src = nullptr;
  uint64_t red_count = 0;
  char* copy_dst = nullptr;
  // send: the recv whose reduce rewrites this frame's bytes: that reduce waits
  // for this send, and a re-send after it carries the result (FINAL)
  Frame* rewritten_by = nullptr;
  Frame* waits_for = nullptr;  // recv: the send above
  bool done = false;
  bool started = false;
  bolt_op op{};
};

// What an operation does on one of its links.
struct OpLink {
  Link* link = nullptr;
  uint64_t first_send = 0;  // the op's first DATA seq each way on the link
  uint64_t first_recv = 0;
  bool reconciled = false;  // a RESUME exchange happened during this op
  uint64_t resumes = 0;
  uint64_t sent_since = 0;  // DATA frames sent (again) since the last RESUME
  uint64_t recv_since = 0;
  bool sent_any = false, recv_any = false;
  bool settled = false;         // finish(): its ACKs are done
  uint64_t resumes_planned = 0;  // finish(): `resumes` when its ACKs were planned
  std::vector<Frame*> resend;   // frames of earlier steps/ops the peer lacks
};

// Storage one operation leaves to the next (a group runs one at a time): after
// its first few operations, a group moves frames without allocating.
struct Arena {
  std::deque<Frame> frames;  // [0, used): the running operation's; addresses stay put
  size_t used = 0;
  std::deque<OpLink> links;  // [0, links_used)
  size_t links_used = 0;
  std::vector<Frame*> batch, run, acks;
  std::vector<Link*> touched;
  std::vector<bolt_op> ops;
  int64_t wait_ema_ns = 0;  // how long a step's batch has waited lately: the spin follows it
  bool busy = false;
};

class Op {
 public:
  // Operations whose input is at most this many bytes send from kept copies.
  static constexpr uint64_t kCopyLimit = 256 << 10;

  // `matched`: every rank is in this operation together (a collective), so it
  // can end with ACKs; a send or a receive is not (the peer may be sending too).
  // `crc`: DATA frames sent carry CRC32C of their payload.
  Op(Arena& arena, uint64_t nbytes, bool matched, int64_t deadline_ns, int wake_fd,
     const std::atomic<bool>* interrupted, bool crc = false);
  ~Op();
  Op(const Op&) = delete;
  Op& operator=(const Op&) = delete;

  // Add a frame to the next step.  `hold` (large point-to-point sends): keeps
  // `buf` alive and unchanged until the peer has the frame, instead of a copy or an ACK.
  Frame* send(Link* l, const char* buf, uint64_t len, uint8_t dtype, std::shared_ptr<const void> hold = {});
  Frame* recv(Link* l, char* buf, uint64_t len, uint8_t dtype);
  // Run the frames added since the last step (and any re-sends) to completion.
  void step();
  // End of the operation: the ACKs a large operation owes and waits for.
  void finish();

  bool small() const { return small_; }

 private:
  Frame& new_frame();
  OpLink& per(Link* l);
  void run(const std::vector<Frame*>& frames);
  void start(Frame& f);
  void ready(const std::vector<Link*>& links, const std::vector<Frame*>& current);
  void adopt(const std::vector<Link*>& links, const std::vector<Frame*>& current);
  void reconcile(Link* l, const uint8_t* peer_state, const std::vector<Frame*>& current);
  void fill_state(Link* l, uint64_t epoch, uint8_t* out);
  void completed(Frame& f);
  void check_interrupt();
  template <class F>
  void each_frame(F&& fn) {
    for (size_t i = 0; i < a_.used; i++) fn(a_.frames[i]);
  }

  Arena& a_;
  const bool small_;
  const bool matched_;
  const int64_t deadline_ns_;
  const int wake_fd_;
  const std::atomic<bool>* interrupted_;
  const bool crc_;
};

}  // namespace boltring
