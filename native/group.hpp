// boltring as an MLX distributed group: MLX's own primitives (AllReduce,
// AllGather, Send, Recv, ReduceScatter) call these methods on the evaluating
// thread; each encodes a task on the caller's CPU stream, and the task moves the
// bytes (algorithms.cpp) on that stream's thread, with no Python on the way.
//
// Order: every collective takes a ticket when it is encoded, and its task waits
// for its turn, so a group's collectives run in the order they were encoded on
// every rank, whatever stream or thread encoded them.
#pragma once

#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>

#include "mlx/array.h"
#include "mlx/distributed/distributed_impl.h"

#include "algorithms.hpp"
#include "link.hpp"

namespace boltring {

namespace mx = mlx::core;

// Upper bounds (ns) of the operation-latency histogram's buckets; one more bucket
// counts the operations above the last.  An operation's latency runs from its turn
// to its end: the bytes' time, waiting for the peer included.
constexpr std::array<int64_t, 19> kOpBoundsNs = {
    10'000,     20'000,     50'000,      100'000,     200'000,     500'000,       1'000'000,
    2'000'000,  5'000'000,  10'000'000,  20'000'000,  50'000'000,  100'000'000,   200'000'000,
    500'000'000, 1'000'000'000, 2'000'000'000, 5'000'000'000, 10'000'000'000};

struct GroupStats {
  uint64_t ops;     // operations completed
  uint64_t op_ns;   // their latencies, summed
  std::array<uint64_t, kOpBoundsNs.size() + 1> op_buckets;  // per bucket, not cumulative
};

class BoltGroup : public mx::distributed::detail::GroupImpl,
                  public std::enable_shared_from_this<BoltGroup> {
 public:
  BoltGroup(int rank, int size, double timeout_s);
  ~BoltGroup() override;

  std::shared_ptr<Link> add_link(int peer);
  std::shared_ptr<Link> link(int peer);
  // Stop: waiting and running collectives raise PeerClosed; returns once none
  // runs (at most `wait_s`), after which the caller may close the connections.
  void close(double wait_s = 2.0);
  // Wait (at most `wait_s`) until every collective whose task has been dispatched
  // has finished, or the group has failed or closed: at exit, so that a peer still
  // issuing its side of them gets it before this rank's GOODBYE.
  void drain(double wait_s);
  bool closed();
  // A failure that ends the group (every later operation raises it), or none.
  std::optional<Failure> failure();
  void set_timeout(double timeout_s) { timeout_ns_ = static_cast<int64_t>(timeout_s * 1e9); }
  // CRC32C on every DATA frame this rank sends (from the next operation on);
  // frames that carry one are checked on receipt whatever this says.
  void set_crc(bool on) { crc_ = on; }
  bool crc() const { return crc_; }
  GroupStats stats();
  int wake_fd() const { return wake_[1]; }

  mx::Stream communication_stream(mx::StreamOrDevice s = {}) override;
  int rank() override { return rank_; }
  int size() override { return size_; }
  std::shared_ptr<GroupImpl> split(int color, int key = -1) override;
  void all_sum(const mx::array& in, mx::array& out, mx::Stream s) override;
  void all_max(const mx::array& in, mx::array& out, mx::Stream s) override;
  void all_min(const mx::array& in, mx::array& out, mx::Stream s) override;
  void all_gather(const mx::array& in, mx::array& out, mx::Stream s) override;
  void sum_scatter(const mx::array& in, mx::array& out, mx::Stream s) override;
  void send(const mx::array& in, int dst, mx::Stream s) override;
  void recv(mx::array& out, int src, mx::Stream s) override;

 private:
  void all_reduce(const mx::array& in, mx::array& out, mx::Stream s, int op, const char* name);
  void schedule(mx::Stream s, const mx::array* in, mx::array* out, std::function<void(Ctx&)> body);
  void run(uint64_t ticket, const std::function<void(Ctx&)>& body);
  void check();
  void neighbour(int peer, const char* what);  // a bad rank is the caller's error, at once

  const int rank_, size_;
  std::atomic<int64_t> timeout_ns_;
  std::atomic<bool> crc_{false};
  int wake_[2] = {-1, -1};
  std::mutex mu_;
  std::condition_variable turn_cv_;
  uint64_t next_ticket_ = 0, turn_ = 0;
  std::map<int, std::shared_ptr<Link>> links_;
  std::map<int, Link*> neighbours_;  // the same links for the op thread (links are added at formation)
  std::optional<Failure> fatal_;
  bool closed_ = false;
  bool running_ = false;  // a task is moving bytes (close() waits for it)
  Scratch scratch_;
  Arena arena_;
  std::atomic<uint64_t> ops_{0};
  std::atomic<uint64_t> op_ns_{0};
  std::array<std::atomic<uint64_t>, kOpBoundsNs.size() + 1> op_buckets_{};
};

// Set from a SIGINT handler (module.cpp): the running collective stops.  The
// handler also writes to every live group's wake pipe, listed here.
extern std::atomic<bool> g_interrupted;
constexpr int kMaxWakeFds = 64;
extern std::atomic<int> g_wake_fds[kMaxWakeFds];

}  // namespace boltring
