// boltring._native: the native MLX group, built in nanobind's `mlx` domain so
// that the mx::distributed::Group made here is MLX's own Python Group type.
#include <nanobind/nanobind.h>
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <signal.h>
#include <unistd.h>

#include <cstring>
#include <limits>

#include "mlx/distributed/distributed.h"

#include "group.hpp"

namespace nb = nanobind;
using namespace nb::literals;
using boltring::BoltGroup;
using boltring::Fail;
using boltring::Failure;
using boltring::Link;
using boltring::LinkState;
using boltring::kOpBoundsNs;

#ifndef BOLTRING_MLX_VERSION
#error "BOLTRING_MLX_VERSION: the MLX version this is built against (CMakeLists.txt sets it)"
#endif

namespace {

PyObject* g_errors[9] = {};  // boltring.errors classes by Fail kind

void load_errors() {
  nb::module_ errors = nb::module_::import_("boltring.errors");
  const char* names[9] = {nullptr, "PeerLost", "PeerClosed", "LinkDown", "Timeout",
                          "ProtocolError", "ConfigError", "AuthError", nullptr};
  for (int i = 1; i < 8; i++) g_errors[i] = errors.attr(names[i]).inc_ref().ptr();
}

struct sigaction g_previous;

void on_sigint(int sig, siginfo_t* info, void* ctx) {
  int saved = errno;
  boltring::g_interrupted = true;
  for (auto& slot : boltring::g_wake_fds) {
    int fd = slot.load();
    if (fd >= 0) {
      char b = 1;
      ssize_t n = ::write(fd, &b, 1);
      (void)n;
    }
  }
  errno = saved;
  if (g_previous.sa_flags & SA_SIGINFO) {
    if (g_previous.sa_sigaction) g_previous.sa_sigaction(sig, info, ctx);
  } else if (g_previous.sa_handler != SIG_DFL && g_previous.sa_handler != SIG_IGN) {
    g_previous.sa_handler(sig);
  }
}

// Chain a C-level SIGINT handler in front of Python's, so that Ctrl-C reaches a
// collective running on MLX's stream thread while the main thread waits in C++.
bool install_sigint() {
  struct sigaction now;
  if (sigaction(SIGINT, nullptr, &now) != 0) return false;
  if ((now.sa_flags & SA_SIGINFO) && now.sa_sigaction == on_sigint) return true;
  struct sigaction mine;
  std::memset(&mine, 0, sizeof mine);
  mine.sa_sigaction = on_sigint;
  mine.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&mine.sa_mask);
  g_previous = now;
  return sigaction(SIGINT, &mine, nullptr) == 0;
}

// Set the Python error for a tagged message; false when it is not boltring's.
bool translate(const char* what) {
  static const char prefix[] = "[boltring:";
  if (std::strncmp(what, prefix, sizeof prefix - 1) != 0) return false;
  const char* name = what + sizeof prefix - 1;
  const char* end = std::strstr(name, "] ");
  if (end == nullptr) return false;
  std::string kind(name, end), text(end + 2);
  if (kind == "Interrupted") {
    if (PyErr_CheckSignals() != 0) return true;  // Python's handler raised (KeyboardInterrupt)
    PyErr_SetNone(PyExc_KeyboardInterrupt);
    return true;
  }
  for (int i = 1; i < 8; i++)
    if (kind == boltring::kind_name(static_cast<Fail>(i))) {
      PyErr_SetString(g_errors[i], text.c_str());
      return true;
    }
  return false;
}

nb::dict state_dict(const LinkState& s) {
  nb::dict d;
  d["version"] = s.version;
  d["epoch"] = s.epoch;
  d["staged"] = s.staged;
  d["stripes"] = s.stripes;
  d["broken"] = s.broken;
  d["broken_why"] = s.broken_why;
  d["failed"] = s.failed;
  d["failure"] = s.failure;
  d["bytes_sent"] = s.bytes_sent;
  d["bytes_received"] = s.bytes_received;
  d["frames_sent"] = s.frames_sent;
  d["frames_received"] = s.frames_received;
  d["frames_resent"] = s.frames_resent;
  d["retired_below"] = s.retired_below;
  return d;
}

}  // namespace

NB_MODULE(_native, m) {
  m.doc() = "boltring's native MLX distributed group (see native/group.hpp)";
  m.attr("MLX_VERSION") = BOLTRING_MLX_VERSION;  // the MLX headers this was built against
  load_errors();

  // boltring's failures reach Python as RuntimeError("[boltring:<kind>] ...") when
  // MLX re-raises them from a task (failure.hpp), or as Failure when thrown at
  // encoding: both become the boltring.errors class the kind names.
  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const std::runtime_error& e) {
      if (!translate(e.what())) throw;
    }
  });

  nb::class_<Link>(m, "Link", "one neighbour's connections as the data plane sees them")
      .def_prop_ro("peer", &Link::peer)
      .def("stage", [](Link& l, uint64_t epoch, std::vector<int> fds, std::string where) {
             nb::gil_scoped_release nogil;
             l.stage(epoch, std::move(fds), std::move(where));
           }, "epoch"_a, "fds"_a, "where"_a,
           "Hand over ready connections (stripe 0 first) for `epoch`; `where` names the path in errors.")
      .def("fail", [](Link& l, int kind, const std::string& why) { l.fail(static_cast<Fail>(kind), why); },
           "kind"_a, "why"_a, "The link cannot be repaired: every wait on it raises this.")
      .def("peer_left", [](Link& l, int kind, const std::string& why) { l.peer_left(static_cast<Fail>(kind), why); },
           "kind"_a, "why"_a, "The peer closed its group: fail now if the path is broken, else when it breaks.")
      .def("changed", [](Link& l, uint64_t seen, double timeout_s) {
             LinkState s;
             {
               nb::gil_scoped_release nogil;
               s = l.changed(seen, timeout_s);
             }
             return state_dict(s);
           }, "seen"_a, "timeout_s"_a, "Wait until the state's version passes `seen`.")
      .def("state", [](Link& l) { return state_dict(l.state()); })
      .def("close", &Link::close);

  nb::class_<BoltGroup>(m, "Native", "the data plane of one group")
      .def("add_link", &BoltGroup::add_link, "peer"_a)
      .def("link", &BoltGroup::link, "peer"_a)
      .def("close", [](BoltGroup& g, double wait_s) {
             nb::gil_scoped_release nogil;
             g.close(wait_s);
           }, "wait_s"_a = 2.0)
      .def("drain", [](BoltGroup& g, double wait_s) {
             nb::gil_scoped_release nogil;
             g.drain(wait_s);
           }, "wait_s"_a, "Wait until every dispatched collective has finished (at exit, before GOODBYE).")
      .def_prop_ro("closed", &BoltGroup::closed)
      .def("set_timeout", &BoltGroup::set_timeout, "timeout_s"_a)
      .def_prop_rw("crc", &BoltGroup::crc, &BoltGroup::set_crc,
                   "CRC32C on every DATA frame this rank sends (frames that carry one are always checked)")
      .def("failure", [](BoltGroup& g) -> nb::object {
        auto f = g.failure();
        if (!f) return nb::none();
        int k = static_cast<int>(f->kind);
        PyObject* cls = k >= 1 && k < 8 ? g_errors[k] : g_errors[1];  // else PeerLost
        return nb::borrow(cls)(f->text());
      }, "The failure that ended the group, as the boltring exception its collectives raise, or None.")
      .def("stats", [](BoltGroup& g) {
        auto s = g.stats();
        nb::dict d;
        d["ops"] = s.ops;
        d["op_seconds"] = static_cast<double>(s.op_ns) / 1e9;
        nb::list buckets;  // (upper bound in s, operations in the bucket); the last bound is inf
        for (size_t i = 0; i < s.op_buckets.size(); i++)
          buckets.append(nb::make_tuple(i < kOpBoundsNs.size() ? static_cast<double>(kOpBoundsNs[i]) / 1e9
                                                               : std::numeric_limits<double>::infinity(),
                                        s.op_buckets[i]));
        d["op_buckets"] = buckets;
        return d;
      });

  m.def("make_group", [](nb::handle cls, int rank, int size, double timeout_s) {
        auto impl = std::make_shared<BoltGroup>(rank, size, timeout_s);
        // an instance of `cls`, a Python subclass of mx.distributed.Group
        nb::object inst = nb::inst_alloc(cls);
        new (nb::inst_ptr<mlx::core::distributed::Group>(inst)) mlx::core::distributed::Group(impl);
        nb::inst_mark_ready(inst);
        return nb::make_tuple(inst, impl);
      }, "cls"_a, "rank"_a, "size"_a, "timeout_s"_a,
      "A new group: (an instance of `cls`, which must subclass mx.distributed.Group, its Native).");
  m.def("install_sigint", &install_sigint,
        "Put a C-level SIGINT handler in front of Python's, so Ctrl-C stops a running collective.");
  m.def("shares_types", [](const mlx::core::array& a) { return a.size() == 1; }, "probe"_a,
        "True when an mx.array from mlx.core converts here: the two modules share nanobind's internals.");
}
