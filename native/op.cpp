#include "op.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace boltring {

namespace {

constexpr int kSliceMs = 50;
constexpr size_t kResumeBytes = 48;  // epoch u64, frontier u64, 256-bit bitmap
constexpr uint64_t kBitmap = 256;
constexpr size_t kMaxRun = BOLT_MAX_OPS / 2;  // sends (and as many receives) per bolt_run
constexpr int64_t kSpinMostUs = 1000;  // default; BOLTRING_SPIN_US overrides (0: never spin)
constexpr int64_t kSpinLeastNs = 40'000;

// The longest a step polls its sockets without sleeping before it waits in poll().
int64_t spin_most_ns() {
  static const int64_t ns = [] {
    const char* v = std::getenv("BOLTRING_SPIN_US");
    return (v ? std::max<int64_t>(0, std::atoll(v)) : kSpinMostUs) * 1000;
  }();
  return ns;
}

// How long this step spins: twice the group's recent waits, so a wait that usually
// ends within a spin never pays a wake-up from poll() (on a busy machine that costs
// more than the exchange: 16 KiB all_sums took 60-110 us without a spin, 25 us with
// one; decode's all_sums, whose peer arrives some hundred microseconds late, halve
// with a long spin), while waits longer than the most sleep after the least.
int64_t spin_budget(int64_t wait_ema_ns) {
  const int64_t most = spin_most_ns(), least = std::min(kSpinLeastNs, most);
  if (wait_ema_ns >= most) return least;
  return std::clamp(2 * wait_ema_ns, least, most);
}

void put64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
uint64_t get64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v |= uint64_t{p[i]} << (8 * i);
  return v;
}

// A transfer on `l` failed with `rc` at `op`: a broken path waits for the next epoch
// (the caller goes on); a lie or a GOODBYE ends the operation, and a lie the link.
void path_failed(Link* l, int rc, const bolt_op& op, const std::string& during) {
  switch (classify(rc)) {
    case Verdict::Protocol: {
      Failure f(Fail::Protocol, l->where() + ": " + during + describe(rc, op), rc);
      l->fail(f.kind, f.text());
      throw f;
    }
    case Verdict::Goodbye:
      throw Failure(Fail::PeerClosed, l->where() + ": the peer said GOODBYE", rc);
    case Verdict::PathBroken:
      l->broke(l->where() + ": " + during + describe(rc, op));
      return;
  }
}

void drain(int fd) {
  char buf[64];
  while (fd >= 0 && ::read(fd, buf, sizeof buf) > 0) {
  }
}

}  // namespace

Op::Op(Arena& arena, uint64_t nbytes, bool matched, int64_t deadline_ns, int wake_fd,
       const std::atomic<bool>* interrupted, bool crc)
    : a_(arena),
      small_(nbytes <= kCopyLimit),
      matched_(matched),
      deadline_ns_(deadline_ns),
      wake_fd_(wake_fd),
      interrupted_(interrupted),
      crc_(crc) {
  if (a_.busy) throw Failure(Fail::Config, "two operations of one group at once");
  a_.busy = true;
}

Op::~Op() {
  a_.used = a_.links_used = 0;
  a_.batch.clear();
  a_.busy = false;
}

Frame& Op::new_frame() {
  if (a_.used == a_.frames.size()) a_.frames.emplace_back();
  Frame& f = a_.frames[a_.used++];
  f = Frame{};
  return f;
}

OpLink& Op::per(Link* l) {
  for (size_t i = 0; i < a_.links_used; i++)
    if (a_.links[i].link == l) return a_.links[i];
  if (a_.links_used == a_.links.size()) a_.links.emplace_back();
  OpLink& p = a_.links[a_.links_used++];
  std::vector<Frame*> resend = std::move(p.resend);  // keeps its capacity
  resend.clear();
  p = OpLink{};
  p.resend = std::move(resend);
  p.link = l;
  p.first_send = l->send_next;
  p.first_recv = l->recv_next;
  return p;
}

Frame* Op::send(Link* l, const char* buf, uint64_t len, uint8_t dtype, std::shared_ptr<const void> hold) {
  OpLink& p = per(l);
  Frame& f = new_frame();
  f.link = l;
  f.send = true;
  f.len = len;
  f.dtype = dtype;
  f.seq = l->send_next++;
  // a small operation sends from a copy kept until the peer has the frame: its
  // buffers may be rewritten (donated) as soon as the operation returns
  if (small_)
    f.buf = l->keep(f.seq, dtype, buf, len).bytes.data();
  else if (hold)
    f.buf = const_cast<char*>(l->keep_held(f.seq, dtype, buf, len, std::move(hold)).held);
  else
    f.buf = const_cast<char*>(buf);
  p.sent_any = true;
  a_.batch.push_back(&f);
  return &f;
}

Frame* Op::recv(Link* l, char* buf, uint64_t len, uint8_t dtype) {
  OpLink& p = per(l);
  Frame& f = new_frame();
  f.link = l;
  f.buf = buf;
  f.len = len;
  f.dtype = dtype;
  f.seq = l->recv_next++;
  p.recv_any = true;
  a_.batch.push_back(&f);
  return &f;
}

void Op::check_interrupt() {
  if (interrupted_ != nullptr && interrupted_->load())
    throw Failure(Fail::Interrupted, "interrupted");
}

void Op::start(Frame& f) {
  Link* l = f.link;
  if (f.ack && f.send) {
    bolt_op_send(&f.op, l->control_fd(), BOLT_KIND_ACK, BOLT_DT_RAW, l->recv_frontier, nullptr, 0, 0);
  } else if (f.ack) {
    bolt_op_recv(&f.op, l->control_fd(), BOLT_KIND_ACK, BOLT_DT_RAW, 0, nullptr, 0, 1);
    f.op.check_seq = 0;
  } else if (f.send) {
    bolt_op_send(&f.op, l->fd_for(f.seq), BOLT_KIND_DATA, f.dtype, f.seq, f.buf, f.len, crc_ ? 1 : 0);
    uint8_t flags = BOLT_FLAG_ACKED;
    if (f.rewritten_by != nullptr && f.rewritten_by->done) flags |= BOLT_FLAG_FINAL;
    bolt_op_flags(&f.op, flags, static_cast<uint32_t>(l->recv_frontier));
  } else {
    bolt_op_recv(&f.op, l->fd_for(f.seq), BOLT_KIND_DATA, f.dtype, f.seq, f.buf, f.len, 1);
    if (f.red_count) bolt_op_reduce(&f.op, f.red_op, f.red_dtype, f.red_dst, f.red_src, f.red_count);
    if (f.copy_dst) bolt_op_copy(&f.op, f.copy_dst);
  }
  f.started = true;
}

void Op::completed(Frame& f) {
  f.done = true;
  Link* l = f.link;
  if (f.ack) {
    if (!f.send) l->peer_reached(f.op.got.seq);
    return;
  }
  OpLink& p = per(l);
  if (f.send) {
    l->bytes_sent += f.len;
    l->frames_sent++;
    p.sent_since++;
  } else {
    l->bytes_received += f.len;
    l->frames_received++;
    p.recv_since++;
    if (f.op.got.flags & BOLT_FLAG_ACKED) l->peer_reached(l->widen_ack(f.op.got.reserved));
  }
}

void Op::fill_state(Link* l, uint64_t epoch, uint8_t* out) {
  uint64_t frontier = l->recv_next;
  each_frame([&](Frame& f) {
    if (f.link == l && !f.send && !f.ack && !f.done) frontier = std::min(frontier, f.seq);
  });
  std::memset(out, 0, kResumeBytes);
  put64(out, epoch);
  put64(out + 8, frontier);
  each_frame([&](Frame& f) {
    if (f.link == l && !f.send && !f.ack && f.done && f.seq >= frontier && f.seq - frontier < kBitmap)
      out[16 + (f.seq - frontier) / 8] |= static_cast<uint8_t>(1u << ((f.seq - frontier) % 8));
  });
}

void Op::reconcile(Link* l, const uint8_t* peer, const std::vector<Frame*>& current) {
  const uint64_t pf = get64(peer + 8);
  auto missing = [&](uint64_t s) {
    if (s < pf) return false;
    uint64_t i = s - pf;
    return !(i < kBitmap && (peer[16 + i / 8] >> (i % 8)) & 1u);
  };
  if (pf > l->send_next)
    throw Failure(Fail::PeerLost, l->where() + ": the peer says it holds frames never sent");
  l->peer_reached(pf);
  OpLink& p = per(l);
  p.reconciled = true;
  p.resumes++;
  p.sent_since = p.recv_since = 0;
  p.resend.clear();
  // frames of earlier operations the peer lacks: only small ones are kept
  for (uint64_t s = pf; s < p.first_send; s++) {
    if (!missing(s)) continue;
    Kept* k = l->kept(s);
    if (k == nullptr)
      throw Failure(Fail::PeerLost, l->where() + ": cannot resume, frame " + std::to_string(s) +
                                        " is no longer held");
    Frame& f = new_frame();
    f.link = l;
    f.send = true;
    f.buf = const_cast<char*>(k->data());
    f.len = k->len;
    f.dtype = k->dtype;
    f.seq = s;
    p.resend.push_back(&f);
  }
  each_frame([&](Frame& f) {
    if (f.link != l) return;
    if (f.ack) {  // the ACKs planned before this RESUME: finish() plans them anew
      f.done = true;
      return;
    }
    if (!f.send) {
      if (!f.done) f.started = false;
      return;
    }
    if (f.seq < p.first_send) return;  // the copies queued above
    if (!missing(f.seq)) {
      f.done = true;  // the peer holds it (the last bytes went out before the break)
      return;
    }
    f.done = false;
    f.started = false;
    if (std::find(current.begin(), current.end(), &f) == current.end()) p.resend.push_back(&f);
  });
  std::sort(p.resend.begin(), p.resend.end(), [](Frame* a, Frame* b) { return a->seq < b->seq; });
  l->frames_resent += p.resend.size();
}

// Adopt the staged epochs of `links` at once: their RESUME exchanges run in one
// poll loop, since in a ring each neighbour may be adopting its other link first.
void Op::adopt(const std::vector<Link*>& links, const std::vector<Frame*>& current) {
  struct Resume {
    Link* l;
    uint64_t epoch;
    uint8_t mine[kResumeBytes], theirs[kResumeBytes];
    bolt_op ops[2];
  };
  std::vector<Resume> rs;
  for (Link* l : links) {
    auto staged = l->take_staged();
    if (!staged) continue;
    each_frame([&](Frame& f) {
      if (f.link == l && !f.done) f.started = false;  // their bytes went down with the old path
    });
    uint64_t epoch = staged->epoch;
    l->adopted(std::move(*staged));
    Resume& r = rs.emplace_back();
    r.l = l;
    r.epoch = epoch;
    fill_state(l, r.epoch, r.mine);
    bolt_op_send(&r.ops[0], l->control_fd(), BOLT_KIND_RESUME, BOLT_DT_RAW, r.epoch, r.mine, kResumeBytes, 0);
    bolt_op_recv(&r.ops[1], l->control_fd(), BOLT_KIND_RESUME, BOLT_DT_RAW, r.epoch, r.theirs, kResumeBytes, 1);
  }
  std::vector<bolt_op> ops;
  while (!rs.empty()) {
    ops.clear();
    for (auto& r : rs) ops.insert(ops.end(), r.ops, r.ops + 2);
    int failed = -1;
    int rc = bolt_run_wake(ops.data(), static_cast<int>(ops.size()), deadline_ns_, kSliceMs, &failed, wake_fd_);
    for (size_t i = 0; i < rs.size(); i++) std::copy(ops.begin() + 2 * i, ops.begin() + 2 * i + 2, rs[i].ops);
    Link* bad = failed >= 0 && static_cast<size_t>(failed / 2) < rs.size() ? rs[static_cast<size_t>(failed / 2)].l
                                                                          : nullptr;
    for (auto it = rs.begin(); it != rs.end();) {  // finished exchanges: reconcile
      if (it->ops[0].finished && it->ops[1].finished) {
        reconcile(it->l, it->theirs, current);
        it = rs.erase(it);
      } else {
        ++it;
      }
    }
    if (rc == 0) continue;
    if (rc == BOLT_ESLICE || rc == BOLT_EWAKE) {
      drain(wake_fd_);
      check_interrupt();
      for (auto& r : rs) r.l->check();
      continue;  // a newer staged epoch is taken by the caller's next round
    }
    if (rc == -ETIMEDOUT && bolt_now_ns() >= deadline_ns_)
      throw Failure(Fail::Timeout, (rs.empty() ? std::string("a link") : rs[0].l->where()) +
                                       ": the deadline passed while resuming on a new path");
    if (bad == nullptr) throw Failure(Fail::PeerLost, "RESUME failed: " + describe(rc), rc);
    path_failed(bad, rc, ops[static_cast<size_t>(failed)], "RESUME: ");
    rs.erase(std::find_if(rs.begin(), rs.end(), [&](const Resume& r) { return r.l == bad; }));
  }
}

void Op::ready(const std::vector<Link*>& links, const std::vector<Frame*>& current) {
  for (;;) {
    check_interrupt();
    bool staged = false;
    for (Link* l : links) {
      l->check();
      staged = staged || l->has_staged();
    }
    if (staged) {
      adopt(links, current);
      continue;  // adopted (usable), or broke again, or a newer epoch waits
    }
    Link* waiting = nullptr;
    for (Link* l : links)
      if (!l->usable() && waiting == nullptr) waiting = l;
    if (waiting == nullptr) return;
    int64_t now = bolt_now_ns();
    if (now >= deadline_ns_) {
      std::string why = waiting->broken_why();
      throw Failure(Fail::Timeout, "peer " + std::to_string(waiting->peer()) +
                                       ": no usable path within the deadline (" +
                                       (why.empty() ? "no connection yet" : why) + ")");
    }
    waiting->wait_for_epoch(std::min(deadline_ns_, now + int64_t{kSliceMs} * 1'000'000));
  }
}

void Op::step() {
  run(a_.batch);
  a_.batch.clear();
}

void Op::run(const std::vector<Frame*>& frames) {
  std::vector<Link*>& links = a_.touched;
  links.clear();
  for (Frame* f : frames) {
    per(f->link);
    if (std::find(links.begin(), links.end(), f->link) == links.end()) links.push_back(f->link);
  }
  std::vector<Frame*>& run = a_.run;
  std::vector<bolt_op>& ops = a_.ops;
  int64_t batch_began = bolt_now_ns();
  for (;;) {
    ready(links, frames);
    run.clear();
    size_t sends = 0, recvs = 0;
    auto take = [&](Frame* f) {
      if (f->done) return;
      size_t& n = f->send ? sends : recvs;
      if (n >= kMaxRun) return;
      if (f->waits_for != nullptr && !f->waits_for->done &&
          std::find(run.begin(), run.end(), f->waits_for) == run.end())
        return;  // its send is not in this run: its reduce could not be held
      n++;
      run.push_back(f);
    };
    for (Link* l : links)
      for (Frame* f : per(l).resend) take(f);
    for (Frame* f : frames) take(f);
    if (run.empty()) break;
    ops.resize(run.size());
    for (size_t i = 0; i < run.size(); i++) {
      if (!run[i]->started) start(*run[i]);
      ops[i] = run[i]->op;
    }
    for (size_t i = 0; i < run.size(); i++) {
      Frame* w = run[i]->waits_for;
      ops[i].after = nullptr;
      if (w != nullptr && !w->done)
        ops[i].after = &ops[std::find(run.begin(), run.end(), w) - run.begin()];
    }
    int failed = -1;
    int rc = BOLT_ESLICE;
    for (int64_t until = bolt_now_ns() + spin_budget(a_.wait_ema_ns); rc == BOLT_ESLICE && bolt_now_ns() < until;)
      rc = bolt_run_wake(ops.data(), static_cast<int>(ops.size()), deadline_ns_, 0, &failed, wake_fd_);
    if (rc == BOLT_ESLICE)
      rc = bolt_run_wake(ops.data(), static_cast<int>(ops.size()), deadline_ns_, kSliceMs, &failed, wake_fd_);
    for (size_t i = 0; i < run.size(); i++) {
      run[i]->op = ops[i];
      run[i]->op.after = nullptr;
      if (ops[i].finished && !run[i]->done) completed(*run[i]);
    }
    if (rc == 0) {  // learn how long a batch waits (an outlier counts as twice the most)
      const int64_t now = bolt_now_ns();
      a_.wait_ema_ns += (std::min(now - batch_began, 2 * spin_most_ns()) - a_.wait_ema_ns) / 8;
      batch_began = now;
      continue;
    }
    if (rc == BOLT_ESLICE || rc == BOLT_EWAKE) {
      drain(wake_fd_);
      check_interrupt();
      int64_t now = bolt_now_ns();
      for (Frame* f : run)
        if (!f->done) f->link->check_left(now);
      continue;
    }
    if (rc == -ETIMEDOUT && bolt_now_ns() >= deadline_ns_)
      throw Failure(Fail::Timeout, "the operation's deadline passed (" +
                                       (failed >= 0 ? run[failed]->link->where() : std::string("no link")) + ")");
    if (failed < 0) throw Failure(Fail::PeerLost, "transfer failed: " + describe(rc), rc);
    path_failed(run[failed]->link, rc, ops[static_cast<size_t>(failed)], "");
  }
  for (Link* l : links) l->recv_frontier = l->recv_next;
}

void Op::finish() {
  if (small_ || !matched_) return;
  // Each end owes an ACK for what it received and waits for one for what it
  // sent; after a RESUME only for what moved since (both ends know the same).
  for (;;) {
    std::vector<Frame*>& acks = a_.acks;
    acks.clear();
    for (size_t i = 0; i < a_.links_used; i++) {
      OpLink& p = a_.links[i];
      if (p.settled) continue;
      bool owe = p.reconciled ? p.recv_since > 0 : p.recv_any;
      bool expect = p.reconciled ? p.sent_since > 0 : p.sent_any;
      p.resumes_planned = p.resumes;
      if (!owe && !expect) p.settled = true;
      if (owe) {
        Frame& f = new_frame();
        f.link = p.link;
        f.send = f.ack = true;
        acks.push_back(&f);
      }
      if (expect) {
        Frame& f = new_frame();
        f.link = p.link;
        f.ack = true;
        acks.push_back(&f);
      }
    }
    if (acks.empty()) return;
    run(acks);
    for (size_t i = 0; i < a_.links_used; i++) {
      OpLink& p = a_.links[i];
      if (p.resumes == p.resumes_planned) p.settled = true;  // else: plan again from the RESUME
    }
  }
}

}  // namespace boltring
