#include "link.hpp"

#include <unistd.h>

#include <chrono>
#include <cstring>

extern "C" {
#include "bolt.h"
}

namespace boltring {

namespace {
void wake(int fd) {
  if (fd >= 0) {
    char b = 1;
    ssize_t n = ::write(fd, &b, 1);  // a full pipe is already a wake-up
    (void)n;
  }
}
}  // namespace

void Link::bump() {
  version_++;
  cv_.notify_all();
}

void Link::stage(uint64_t epoch, std::vector<int> fds, std::string where) {
  if (fds.empty() || fds.size() > 16) throw Failure(Fail::Config, "an epoch needs 1 to 16 connections");
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (epoch <= epoch_ || (staged_ && epoch <= staged_->epoch)) return;  // stale
    staged_ = Staged{epoch, std::move(fds), std::move(where)};
    bump();
  }
  wake(wake_fd_);
}

void Link::fail(Fail kind, const std::string& why) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (!fatal_) fatal_.emplace(kind, why);
    bump();
  }
  wake(wake_fd_);
}

void Link::peer_left(Fail kind, const std::string& why) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (!left_) left_.emplace(kind, why);
    if (!broken_) return;
    if (!fatal_) fatal_ = left_;
    bump();
  }
  wake(wake_fd_);
}

void Link::close() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    closed_ = true;
    bump();
  }
  wake(wake_fd_);
}

LinkState Link::state() {
  std::lock_guard<std::mutex> lk(mu_);
  return LinkState{version_, epoch_, staged_ ? staged_->epoch : 0, static_cast<int>(fds_.size()),
                   broken_, broken_why_, fatal_.has_value(), fatal_ ? fatal_->text() : "",
                   bytes_sent.load(), bytes_received.load(), frames_sent.load(),
                   frames_received.load(), frames_resent.load(), retired_below_};
}

LinkState Link::changed(uint64_t seen, double timeout_s) {
  {
    std::unique_lock<std::mutex> lk(mu_);
    cv_.wait_for(lk, std::chrono::duration<double>(timeout_s), [&] { return version_ > seen; });
  }
  return state();
}

void Link::broke(const std::string& why) {
  std::lock_guard<std::mutex> lk(mu_);
  broken_ = true;
  broken_why_ = why;
  if (left_ && !fatal_) fatal_ = left_;  // no new path is coming from a peer that left
  bump();
}

std::optional<Link::Staged> Link::take_staged() {
  std::lock_guard<std::mutex> lk(mu_);
  auto s = std::move(staged_);
  staged_.reset();
  return s;
}

bool Link::has_staged() {
  std::lock_guard<std::mutex> lk(mu_);
  return staged_.has_value();
}

void Link::adopted(Staged s) {
  std::lock_guard<std::mutex> lk(mu_);
  epoch_ = s.epoch;
  fds_ = std::move(s.fds);
  where_ = std::move(s.where);
  broken_ = false;
  broken_why_.clear();
  retired_below_ = epoch_;
  bump();
}

void Link::check() {
  std::lock_guard<std::mutex> lk(mu_);
  if (fatal_) throw *fatal_;
  if (closed_) throw Failure(Fail::PeerClosed, "rank " + std::to_string(me_) + ": the group is closed");
}

void Link::check_left(int64_t now_ns) {
  std::optional<Failure> left;
  {
    std::lock_guard<std::mutex> lk(mu_);
    left = left_;
  }
  if (!left) return;
  uint64_t got = bytes_received.load();
  if (left_quiet_since_ == 0 || got != left_bytes_) {
    left_quiet_since_ = now_ns;
    left_bytes_ = got;
  } else if (now_ns - left_quiet_since_ >= kLeftGraceNs) {
    throw *left;
  }
}

bool Link::wait_for_epoch(int64_t until_ns) {
  std::unique_lock<std::mutex> lk(mu_);
  for (;;) {
    if (fatal_) throw *fatal_;
    if (closed_) throw Failure(Fail::PeerClosed, "rank " + std::to_string(me_) + ": the group is closed");
    if (staged_) return true;
    int64_t left = until_ns - bolt_now_ns();
    if (left <= 0) return false;
    cv_.wait_for(lk, std::chrono::nanoseconds(left));
  }
}

std::string Link::broken_why() {
  std::lock_guard<std::mutex> lk(mu_);
  return broken_why_;
}

std::string Link::where() const {
  return where_.empty() ? "peer " + std::to_string(peer_) : where_;
}

Kept& Link::keep(uint64_t seq, uint8_t dtype, const char* src, uint64_t len) {
  Kept k;
  k.seq = seq;
  k.dtype = dtype;
  if (!pool_.empty()) {
    k.bytes = std::move(pool_.back());
    pool_.pop_back();
  }
  k.bytes.resize(len);  // within the reused capacity after warm-up: no allocation
  if (len) std::memcpy(k.bytes.data(), src, len);
  k.len = len;
  store_.push_back(std::move(k));
  return store_.back();
}

Kept& Link::keep_held(uint64_t seq, uint8_t dtype, const char* src, uint64_t len,
                      std::shared_ptr<const void> hold) {
  Kept& k = store_.emplace_back();
  k.seq = seq;
  k.dtype = dtype;
  k.hold = std::move(hold);
  k.held = src;
  k.len = len;
  return k;
}

void Link::peer_reached(uint64_t has) {
  if (has > peer_has) peer_has = has;
  while (!store_.empty() && store_.front().seq < peer_has) {
    if (!store_.front().hold) pool_.push_back(std::move(store_.front().bytes));
    store_.pop_front();  // a held buffer is released here
  }
}

Kept* Link::kept(uint64_t seq) {
  for (auto& k : store_)
    if (k.seq == seq) return &k;
  return nullptr;
}

uint64_t Link::widen_ack(uint32_t low) const {
  uint64_t v = (send_next & ~uint64_t{0xffffffff}) | low;
  if (v > send_next) v -= uint64_t{1} << 32;
  return v;
}

}  // namespace boltring
