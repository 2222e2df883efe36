#include "group.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <stdexcept>

#include "mlx/backend/cpu/encoder.h"
#include "mlx/stream.h"
#include "mlx/utils.h"

extern "C" {
#include "bolt.h"
}

namespace boltring {

std::atomic<bool> g_interrupted{false};

namespace {

int wire_dtype(mx::Dtype d) {
  switch (d) {
    case mx::bool_: return BOLT_DT_BOOL;
    case mx::uint8: return BOLT_DT_U8;
    case mx::uint16: return BOLT_DT_U16;
    case mx::uint32: return BOLT_DT_U32;
    case mx::uint64: return BOLT_DT_U64;
    case mx::int8: return BOLT_DT_I8;
    case mx::int16: return BOLT_DT_I16;
    case mx::int32: return BOLT_DT_I32;
    case mx::int64: return BOLT_DT_I64;
    case mx::float16: return BOLT_DT_F16;
    case mx::bfloat16: return BOLT_DT_BF16;
    case mx::float32: return BOLT_DT_F32;
    case mx::float64: return BOLT_DT_F64;
    case mx::complex64: return BOLT_DT_C64;
    default: throw std::invalid_argument("[boltring] no wire code for this dtype");
  }
}

void contiguous(const mx::array& a, const char* what) {
  if (!a.flags().row_contiguous)
    throw std::invalid_argument(std::string("[boltring] ") + what + ": the array is not row-contiguous");
}

}  // namespace

std::atomic<int> g_wake_fds[kMaxWakeFds];

BoltGroup::BoltGroup(int rank, int size, double timeout_s)
    : rank_(rank), size_(size), timeout_ns_(static_cast<int64_t>(timeout_s * 1e9)) {
  if (::pipe(wake_) != 0) throw std::runtime_error("[boltring] pipe() failed");
  for (int fd : wake_) {
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
    ::fcntl(fd, F_SETFD, FD_CLOEXEC);
  }
  for (auto& slot : g_wake_fds) {
    int none = -1;
    if (slot.compare_exchange_strong(none, wake_[1])) break;
  }
}

BoltGroup::~BoltGroup() {
  for (auto& slot : g_wake_fds) {
    int mine = wake_[1];
    slot.compare_exchange_strong(mine, -1);
  }
  for (int fd : wake_)
    if (fd >= 0) ::close(fd);
}

std::shared_ptr<Link> BoltGroup::add_link(int peer) {
  std::lock_guard<std::mutex> lk(mu_);
  auto& l = links_[peer];
  if (!l) l = std::make_shared<Link>(rank_, peer, wake_[1]);
  neighbours_[peer] = l.get();
  return l;
}

std::shared_ptr<Link> BoltGroup::link(int peer) {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = links_.find(peer);
  return it == links_.end() ? nullptr : it->second;
}

void BoltGroup::close(double wait_s) {
  std::map<int, std::shared_ptr<Link>> links;
  {
    std::lock_guard<std::mutex> lk(mu_);
    closed_ = true;
    links = links_;
  }
  for (auto& [p, l] : links) l->close();
  std::unique_lock<std::mutex> lk(mu_);
  turn_cv_.notify_all();
  turn_cv_.wait_for(lk, std::chrono::duration<double>(wait_s), [&] { return !running_; });
}

void BoltGroup::drain(double wait_s) {
  std::unique_lock<std::mutex> lk(mu_);
  turn_cv_.wait_for(lk, std::chrono::duration<double>(wait_s),
                    [&] { return turn_ == next_ticket_ || closed_ || fatal_; });
}

bool BoltGroup::closed() {
  std::lock_guard<std::mutex> lk(mu_);
  return closed_;
}

std::optional<Failure> BoltGroup::failure() {
  std::lock_guard<std::mutex> lk(mu_);
  return fatal_;
}

GroupStats BoltGroup::stats() {
  GroupStats s{ops_.load(), op_ns_.load(), {}};
  for (size_t i = 0; i < s.op_buckets.size(); i++) s.op_buckets[i] = op_buckets_[i].load();
  return s;
}

void BoltGroup::check() {
  std::lock_guard<std::mutex> lk(mu_);
  if (fatal_) throw *fatal_;
  if (closed_) throw Failure(Fail::PeerClosed, "rank " + std::to_string(rank_) + ": the group is closed");
}

mx::Stream BoltGroup::communication_stream(mx::StreamOrDevice s) {
  return mx::to_stream(s, mx::Device::cpu);  // the caller's stream: no cross-stream fence
}

std::shared_ptr<mx::distributed::detail::GroupImpl> BoltGroup::split(int, int) {
  throw std::runtime_error("[boltring] Group split not supported (form one group per set of ranks "
                           "with boltring.init)");
}

void BoltGroup::schedule(mx::Stream s, const mx::array* in, mx::array* out,
                         std::function<void(Ctx&)> body) {
  check();  // a group that failed says so at every later call
  auto& enc = mx::cpu::get_command_encoder(s);
  if (in) enc.set_input_array(*in);
  if (out) enc.set_output_array(*out);
  uint64_t ticket;
  {
    std::lock_guard<std::mutex> lk(mu_);
    ticket = next_ticket_++;
  }
  enc.dispatch([self = shared_from_this(), ticket, body = std::move(body)]() { self->run(ticket, body); });
}

void BoltGroup::run(uint64_t ticket, const std::function<void(Ctx&)>& body) {
  const int64_t t0 = bolt_now_ns();
  const int64_t deadline = t0 + timeout_ns_.load();
  // an earlier collective ends by its own deadline at the latest; past twice
  // that, something is wrong with the order itself
  const int64_t turn_deadline = t0 + 2 * timeout_ns_.load();
  std::unique_lock<std::mutex> lk(mu_);
  while (turn_ != ticket && !closed_ && !fatal_) {
    turn_cv_.wait_until(lk, std::chrono::steady_clock::now() + std::chrono::milliseconds(50));
    if (turn_ != ticket && bolt_now_ns() > turn_deadline && !fatal_)
      fatal_.emplace(Fail::Timeout, "rank " + std::to_string(rank_) +
                                        ": an earlier collective of this group did not finish within the deadline");
  }
  // the group failed or closed before this one's turn, or as it came: refused here,
  // before `turn` exists (its destructor takes mu_, which `lk` still holds)
  if (fatal_) throw *fatal_;
  if (closed_) throw Failure(Fail::PeerClosed, "rank " + std::to_string(rank_) + ": the group is closed");
  struct Turn {  // whatever happens, the next ticket runs after this one
    BoltGroup* g;
    ~Turn() {
      std::lock_guard<std::mutex> k(g->mu_);
      g->turn_++;
      g->running_ = false;
      g->turn_cv_.notify_all();
    }
  } turn{this};
  running_ = true;
  Ctx c;
  c.rank = rank_;
  c.size = size_;
  c.links = &neighbours_;
  lk.unlock();
  c.scratch = &scratch_;
  c.arena = &arena_;
  c.deadline_ns = deadline;
  c.wake_fd = wake_[0];
  c.interrupted = &g_interrupted;
  c.crc = crc_;
  g_interrupted = false;  // a Ctrl-C before this collective was Python's to handle
  try {
    const int64_t start = bolt_now_ns();
    body(c);
    const int64_t took = bolt_now_ns() - start;
    size_t b = 0;
    while (b < kOpBoundsNs.size() && took > kOpBoundsNs[b]) b++;
    op_buckets_[b].fetch_add(1, std::memory_order_relaxed);
    op_ns_.fetch_add(static_cast<uint64_t>(took), std::memory_order_relaxed);
    ops_++;
  } catch (Failure& f) {
    std::lock_guard<std::mutex> k(mu_);
    if (!fatal_) {
      if (f.kind == Fail::Interrupted)
        fatal_.emplace(Fail::PeerLost, "rank " + std::to_string(rank_) +
                                           ": a collective was interrupted mid-way; form the group again");
      else
        fatal_ = f;
    }
    throw;
  }
}

void BoltGroup::all_reduce(const mx::array& in, mx::array& out, mx::Stream s, int op, const char* name) {
  contiguous(in, name);
  int dt = wire_dtype(in.dtype());
  schedule(s, &in, &out, [in_p = in.data<char>(), out_p = out.data<char>(), n = in.nbytes(), dt, op](Ctx& c) {
    boltring::all_reduce(c, in_p, out_p, n, dt, op);
  });
}

void BoltGroup::all_sum(const mx::array& in, mx::array& out, mx::Stream s) {
  all_reduce(in, out, s, BOLT_SUM, "all_sum");
}
void BoltGroup::all_max(const mx::array& in, mx::array& out, mx::Stream s) {
  all_reduce(in, out, s, BOLT_MAX, "all_max");
}
void BoltGroup::all_min(const mx::array& in, mx::array& out, mx::Stream s) {
  all_reduce(in, out, s, BOLT_MIN, "all_min");
}

void BoltGroup::all_gather(const mx::array& in, mx::array& out, mx::Stream s) {
  contiguous(in, "all_gather");
  int dt = wire_dtype(in.dtype());
  schedule(s, &in, &out, [in_p = in.data<char>(), out_p = out.data<char>(), n = in.nbytes(), dt](Ctx& c) {
    boltring::all_gather(c, in_p, out_p, n, dt);
  });
}

void BoltGroup::sum_scatter(const mx::array& in, mx::array& out, mx::Stream s) {
  contiguous(in, "sum_scatter");
  int dt = wire_dtype(in.dtype());
  schedule(s, &in, &out, [in_p = in.data<char>(), out_p = out.data<char>(), n = in.nbytes(), dt](Ctx& c) {
    boltring::sum_scatter(c, in_p, out_p, n, dt);
  });
}

void BoltGroup::neighbour(int peer, const char* what) {
  std::lock_guard<std::mutex> lk(mu_);
  if (!links_.count(peer))
    throw Failure(Fail::Config, std::string(what) + ": rank " + std::to_string(peer) +
                                    " is not a ring neighbour of rank " + std::to_string(rank_) +
                                    "; boltring connects ring neighbours");
}

void BoltGroup::send(const mx::array& in, int dst, mx::Stream s) {
  contiguous(in, "send");
  neighbour(dst, "send");
  int dt = wire_dtype(in.dtype());
  // the sent array stays referenced until the peer has it: no copy, and nothing
  // can rewrite it (MLX donates only arrays nobody else references)
  auto hold = std::make_shared<const mx::array>(in);
  schedule(s, &in, nullptr, [in_p = in.data<char>(), n = in.nbytes(), dt, dst, hold](Ctx& c) {
    boltring::send(c, in_p, n, dt, dst, hold);
  });
}

void BoltGroup::recv(mx::array& out, int src, mx::Stream s) {
  neighbour(src, "recv");
  int dt = wire_dtype(out.dtype());
  schedule(s, nullptr, &out, [out_p = out.data<char>(), n = out.nbytes(), dt, src](Ctx& c) {
    boltring::recv(c, out_p, n, dt, src);
  });
}

}  // namespace boltring
