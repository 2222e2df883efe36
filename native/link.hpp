// One neighbour's connections as the data plane sees them.
//
// The control plane (Python: dialing, handshakes, policy, probes) hands a link
// ready connections by staging an epoch; the op thread adopts the newest staged
// epoch as soon as it can (between two slices of a transfer, or at once when the
// path broke), tells the peer in a RESUME frame what it has received, and both
// ends send again what the other lacks.  Nothing here calls Python: the control
// plane learns what happened by waiting on `changed()`.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "failure.hpp"

namespace boltring {

// A frame the peer may still need: a copy (small operations send from it), or
// the sender's own buffer with a reference that keeps it alive and unchanged.
struct Kept {
  uint64_t seq = 0;
  uint8_t dtype = 0;
  std::vector<char> bytes;
  std::shared_ptr<const void> hold;  // set: the frame is held[0, len) of this
  const char* held = nullptr;
  uint64_t len = 0;
  const char* data() const { return hold ? held : bytes.data(); }
};

// What the control plane reads of a link.
struct LinkState {
  uint64_t version;      // bumps on every change below
  uint64_t epoch;        // adopted epoch (0: none yet)
  uint64_t staged;       // newest staged epoch not adopted yet (0: none)
  int stripes;
  bool broken;           // the adopted epoch failed; waiting for a new one
  std::string broken_why;
  bool failed;           // a stored fatal failure
  std::string failure;
  uint64_t bytes_sent, bytes_received, frames_sent, frames_received, frames_resent;
  uint64_t retired_below;  // connections of epochs below this are no longer used
};

class Link {
 public:
  Link(int me, int peer, int wake_fd) : me_(me), peer_(peer), wake_fd_(wake_fd) {}
  Link(const Link&) = delete;
  Link& operator=(const Link&) = delete;

  int peer() const { return peer_; }

  // ---- control plane ----
  // New connections for `epoch` (one per stripe, stripe 0 first).  The fds stay
  // owned by the caller, who closes them once retired_below passes the epoch.
  // `where` names the path for messages ("peer 1 (192.168.4.2:5000 via thunderbolt0)").
  void stage(uint64_t epoch, std::vector<int> fds, std::string where);
  // The link cannot be repaired (the peer is gone, a secret mismatch, no path):
  // every wait on it ends with this failure.
  void fail(Fail kind, const std::string& why);
  // The peer closed its group (a GOODBYE on a probe connection).  A live data path
  // still brings every frame it sent, then its own GOODBYE: the link fails with this
  // at once only if its path is broken (or when it breaks), else once an operation
  // has waited kLeftGraceNs on it with nothing arriving (a path gone silent).
  void peer_left(Fail kind, const std::string& why);
  // Wait (GIL released by the caller) until the state's version passes `seen`.
  LinkState changed(uint64_t seen, double timeout_s);
  LinkState state();
  void close();

  // ---- data plane (the op thread only) ----
  bool usable() const { return epoch_ != 0 && !broken_; }
  int fd_for(uint64_t seq) const { return fds_[seq % fds_.size()]; }
  int control_fd() const { return fds_[0]; }
  uint64_t epoch() const { return epoch_; }
  // The path under the current epoch failed, for this reason.
  void broke(const std::string& why);
  // Take the newest staged epoch, if any (the caller then runs RESUME).
  struct Staged {
    uint64_t epoch;
    std::vector<int> fds;
    std::string where;
  };
  std::optional<Staged> take_staged();
  void adopted(Staged s);
  // Block until something is staged (true) or `until_ns` (false); throws the
  // stored failure, or PeerClosed once closed.
  bool wait_for_epoch(int64_t until_ns);
  std::string broken_why();
  void check();  // throw the stored failure, or PeerClosed once closed
  // An operation waits on this link: throw peer_left's failure once nothing has
  // arrived for kLeftGraceNs since the peer left.
  void check_left(int64_t now_ns);
  static constexpr int64_t kLeftGraceNs = 500'000'000;
  bool has_staged();
  std::string where() const;

  // sequence numbers: assigned in program order, identical on both ends
  uint64_t send_next = 0, recv_next = 0;
  uint64_t recv_frontier = 0;  // every frame below it has arrived
  uint64_t peer_has = 0;       // the peer said it holds every frame below this

  // frames the peer may still lack, oldest first; entries below peer_has go
  Kept& keep(uint64_t seq, uint8_t dtype, const char* src, uint64_t len);
  Kept& keep_held(uint64_t seq, uint8_t dtype, const char* src, uint64_t len, std::shared_ptr<const void> hold);
  void peer_reached(uint64_t has);
  Kept* kept(uint64_t seq);
  uint64_t widen_ack(uint32_t low) const;

  std::atomic<uint64_t> bytes_sent{0}, bytes_received{0}, frames_sent{0}, frames_received{0},
      frames_resent{0};

 private:
  void bump();  // lock held: version++, notify

  const int me_, peer_;
  const int wake_fd_;
  std::mutex mu_;
  std::condition_variable cv_;
  uint64_t version_ = 1;
  std::optional<Staged> staged_;
  std::string where_;
  std::optional<Failure> fatal_;
  std::optional<Failure> left_;  // peer_left before the path broke
  int64_t left_quiet_since_ = 0;  // op thread: since when nothing arrived after peer_left
  uint64_t left_bytes_ = 0;
  bool closed_ = false;
  std::string broken_why_;
  uint64_t retired_below_ = 0;
  // written by the op thread under mu_, read by it freely
  uint64_t epoch_ = 0;
  std::vector<int> fds_;
  bool broken_ = false;
  std::deque<Kept> store_;
  std::vector<std::vector<char>> pool_;  // byte buffers of dropped entries, reused
};

}  // namespace boltring
