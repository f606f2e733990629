// trainer/rendezvous.cpp — see rendezvous.h. Plain POSIX sockets and poll().
#include "trainer/rendezvous.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <exception>
#include <sstream>

#include "trainer/comm.h"

namespace ttt {

namespace {

using clock_type = std::chrono::steady_clock;
constexpr const char* kMagic = "ttt-rendezvous-1";
constexpr uint32_t kMaxFrame = 1 << 20;  // frames are ids and messages: a bigger length is garbage

clock_type::time_point deadline_after(double seconds) {
  return clock_type::now() + std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(seconds));
}

double seconds_left(clock_type::time_point deadline) {
  return std::chrono::duration<double>(deadline - clock_type::now()).count();
}

// Waits until fd is readable or the deadline passes; false on timeout.
bool wait_readable(int fd, clock_type::time_point deadline) {
  for (;;) {
    double left = seconds_left(deadline);
    if (left <= 0) return false;
    pollfd p{fd, POLLIN, 0};
    int rc = ::poll(&p, 1, static_cast<int>(std::min(left * 1000.0, 1000.0)) + 1);
    if (rc > 0) return true;
    if (rc < 0 && errno != EINTR) return false;
  }
}

// Reads exactly n bytes; false on EOF, error or timeout.
bool read_exact(int fd, void* buf, size_t n, clock_type::time_point deadline) {
  char* p = static_cast<char*>(buf);
  while (n > 0) {
    if (!wait_readable(fd, deadline)) return false;
    ssize_t got = ::recv(fd, p, n, 0);
    if (got == 0) return false;
    if (got < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return false;
    }
    p += got;
    n -= static_cast<size_t>(got);
  }
  return true;
}

bool write_exact(int fd, const void* buf, size_t n) {
  const char* p = static_cast<const char*>(buf);
  while (n > 0) {
    // MSG_NOSIGNAL: a peer that is gone gives EPIPE here instead of killing us with SIGPIPE.
    ssize_t put = ::send(fd, p, n, MSG_NOSIGNAL);
    if (put < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += put;
    n -= static_cast<size_t>(put);
  }
  return true;
}

bool write_frame(int fd, char type, const std::string& body) {
  std::string f(5 + body.size(), '\0');
  f[0] = type;
  uint32_t n = static_cast<uint32_t>(body.size());
  for (int i = 0; i < 4; ++i) f[1 + static_cast<size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xff);
  std::memcpy(f.data() + 5, body.data(), body.size());
  return write_exact(fd, f.data(), f.size());
}

bool read_frame(int fd, char& type, std::string& body, clock_type::time_point deadline) {
  unsigned char head[5];
  if (!read_exact(fd, head, 5, deadline)) return false;
  type = static_cast<char>(head[0]);
  uint32_t n = 0;
  for (int i = 0; i < 4; ++i) n |= static_cast<uint32_t>(head[1 + i]) << (8 * i);
  if (n > kMaxFrame) return false;
  body.assign(n, '\0');
  return n == 0 || read_exact(fd, body.data(), n, deadline);
}

void set_nodelay(int fd) {
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

std::string endpoint(const std::string& addr, int port) { return addr + ":" + std::to_string(port); }

}  // namespace

TcpRendezvous::TcpRendezvous(const std::string& addr, int port, int rank, int world, double timeout_s)
    : rank_(rank), world_(world), timeout_s_(timeout_s) {
  if (world < 1 || rank < 0 || rank >= world)
    throw std::invalid_argument("rendezvous: rank " + std::to_string(rank) + " is not in [0, " + std::to_string(world) + ")");
  try {
    if (rank == 0) serve(addr, port, timeout_s);
    else join(addr, port, timeout_s);
  } catch (...) {
    for (Peer& p : peers_)
      if (p.fd >= 0) ::close(p.fd);
    throw;
  }
}

TcpRendezvous::~TcpRendezvous() {
  stop_ = true;
  if (watchdog_.joinable()) watchdog_.join();
  // Destroyed while an exception unwinds the stack: this rank is failing, not finishing.
  const bool failing = std::uncaught_exceptions() > 0;
  std::lock_guard<std::mutex> lock(mu_);
  for (Peer& p : peers_) {
    if (p.fd < 0) continue;
    if (failing) write_frame(p.fd, 'A', "rank " + std::to_string(rank_) + " is exiting on an error (see its output)");
    else write_frame(p.fd, 'B', "");
    ::close(p.fd);
  }
}

// --- setting up -----------------------------------------------------------------------------------

void TcpRendezvous::serve(const std::string& addr, int port, double timeout_s) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* res = nullptr;
  if (int rc = ::getaddrinfo(nullptr, std::to_string(port).c_str(), &hints, &res); rc != 0)
    throw CommError("rendezvous: cannot resolve the listening address: " + std::string(gai_strerror(rc)));
  int lfd = -1;
  std::string why = "no address";
  // Prefer IPv6 (dual stack: IPv4 clients reach it too), else the first address that binds.
  for (int pass = 0; pass < 2 && lfd < 0; ++pass) {
    for (addrinfo* a = res; a && lfd < 0; a = a->ai_next) {
      if ((pass == 0) != (a->ai_family == AF_INET6)) continue;
      int fd = ::socket(a->ai_family, a->ai_socktype, a->ai_protocol);
      if (fd < 0) continue;
      int one = 1, zero = 0;
      ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
      if (a->ai_family == AF_INET6) ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
      if (::bind(fd, a->ai_addr, a->ai_addrlen) == 0 && ::listen(fd, world_) == 0) {
        lfd = fd;
      } else {
        why = std::strerror(errno);
        ::close(fd);
      }
    }
  }
  ::freeaddrinfo(res);
  if (lfd < 0)
    throw CommError("rendezvous: rank 0 cannot listen on port " + std::to_string(port) + " (MASTER_PORT): " + why +
                    " (another job on this node may use it: choose another MASTER_PORT)");

  const auto deadline = deadline_after(timeout_s);
  std::vector<bool> seen(static_cast<size_t>(world_), false);
  seen[0] = true;
  while (static_cast<int>(peers_.size()) < world_ - 1) {
    if (!wait_readable(lfd, deadline)) {
      std::string missing;
      for (int r = 1; r < world_; ++r)
        if (!seen[static_cast<size_t>(r)]) missing += (missing.empty() ? "" : ", ") + std::to_string(r);
      ::close(lfd);
      throw CommError("rendezvous: rank 0 waited " + std::to_string(static_cast<int>(timeout_s)) + " s on port " +
                      std::to_string(port) + " but rank(s) " + missing +
                      " did not connect (did they start? do they see MASTER_ADDR:MASTER_PORT = " +
                      endpoint(addr.empty() ? "<unset>" : addr, port) + "?)");
    }
    int fd = ::accept(lfd, nullptr, nullptr);
    if (fd < 0) continue;
    set_nodelay(fd);
    char type = 0;
    std::string hello;
    if (!read_frame(fd, type, hello, clock_type::now() + std::chrono::seconds(10)) || type != 'H') {
      ::close(fd);  // a stray connection (port scanner, stale client): ignore it
      continue;
    }
    std::istringstream in(hello);
    std::string magic;
    int r = -1, w = -1;
    in >> magic >> r >> w;
    std::string problem;
    if (magic != kMagic) problem = "speaks another protocol ('" + hello.substr(0, 40) + "')";
    else if (w != world_) problem = "says world size " + std::to_string(w) + ", rank 0 has " + std::to_string(world_);
    else if (r < 1 || r >= world_) problem = "says rank " + std::to_string(r) + ", outside [1, " + std::to_string(world_) + ")";
    else if (seen[static_cast<size_t>(r)]) problem = "says rank " + std::to_string(r) + ", which already connected";
    if (!problem.empty()) {
      std::string msg = "rendezvous on port " + std::to_string(port) + ": a peer " + problem;
      write_frame(fd, 'A', msg);
      ::close(fd);
      ::close(lfd);
      throw CommError(msg);
    }
    seen[static_cast<size_t>(r)] = true;
    peers_.push_back(Peer{fd, r, false});
  }
  ::close(lfd);
}

void TcpRendezvous::join(const std::string& addr, int port, double timeout_s) {
  if (addr.empty())
    throw CommError("rendezvous: rank " + std::to_string(rank_) +
                    " needs MASTER_ADDR (the host of rank 0) and MASTER_PORT to find rank 0");
  const auto deadline = deadline_after(timeout_s);
  std::string last_error = "no attempt";
  int fd = -1;
  while (fd < 0) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    if (int rc = ::getaddrinfo(addr.c_str(), std::to_string(port).c_str(), &hints, &res); rc != 0) {
      last_error = gai_strerror(rc);
    } else {
      for (addrinfo* a = res; a && fd < 0; a = a->ai_next) {
        int s = ::socket(a->ai_family, a->ai_socktype, a->ai_protocol);
        if (s < 0) continue;
        if (::connect(s, a->ai_addr, a->ai_addrlen) == 0) {
          fd = s;
        } else {
          last_error = std::strerror(errno);
          ::close(s);
        }
      }
      ::freeaddrinfo(res);
    }
    if (fd >= 0) break;
    if (seconds_left(deadline) <= 0)
      throw CommError("rendezvous: rank " + std::to_string(rank_) + " could not reach rank 0 at " +
                      endpoint(addr, port) + " (MASTER_ADDR:MASTER_PORT) within " +
                      std::to_string(static_cast<int>(timeout_s)) + " s: " + last_error);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));  // rank 0 may not listen yet
  }
  set_nodelay(fd);
  peers_.push_back(Peer{fd, 0, false});
  std::ostringstream hello;
  hello << kMagic << ' ' << rank_ << ' ' << world_;
  if (!write_frame(fd, 'H', hello.str()))
    throw CommError("rendezvous: rank " + std::to_string(rank_) + " lost the connection to rank 0 at " + endpoint(addr, port));
}

// --- broadcast ----------------------------------------------------------------------------------------

std::string TcpRendezvous::broadcast(const std::string& payload) {
  if (rank_ == 0) {
    for (Peer& p : peers_)
      if (!write_frame(p.fd, 'P', payload))
        throw CommError("rendezvous: rank 0 could not send to rank " + std::to_string(p.rank) + ": " + std::strerror(errno));
    return payload;
  }
  char type = 0;
  std::string body;
  const auto deadline = deadline_after(timeout_s_);
  if (!read_frame(peers_[0].fd, type, body, deadline))
    throw CommError("rendezvous: rank " + std::to_string(rank_) + " got nothing from rank 0 within " +
                    std::to_string(static_cast<int>(timeout_s_)) + " s (rank 0 failed or closed the connection)");
  if (type == 'A') throw CommError("rendezvous: rank 0 refused rank " + std::to_string(rank_) + ": " + body);
  if (type != 'P') throw CommError("rendezvous: unexpected message from rank 0");
  return body;
}

// --- watchdog -----------------------------------------------------------------------------------------

void TcpRendezvous::start_watchdog() {
  if (watchdog_.joinable() || peers_.empty()) return;
  watchdog_ = std::thread([this] { watch(); });
}

std::string TcpRendezvous::failure() const {
  std::lock_guard<std::mutex> lock(mu_);
  return failure_;
}

void TcpRendezvous::set_failure(const std::string& what) {
  std::lock_guard<std::mutex> lock(mu_);
  if (failure_.empty()) failure_ = what;
}

void TcpRendezvous::send_to(Peer& p, char type, const std::string& body) {
  std::lock_guard<std::mutex> lock(mu_);
  if (p.fd >= 0) write_frame(p.fd, type, body);
}

void TcpRendezvous::notify_abort(const std::string& why) {
  for (Peer& p : peers_) send_to(p, 'A', "rank " + std::to_string(rank_) + " failed: " + why);
}

void TcpRendezvous::watch() {
  while (!stop_) {
    std::vector<pollfd> fds;
    std::vector<Peer*> who;
    for (Peer& p : peers_) {
      if (p.done || p.fd < 0) continue;
      fds.push_back(pollfd{p.fd, POLLIN, 0});
      who.push_back(&p);
    }
    if (fds.empty()) return;
    int rc = ::poll(fds.data(), fds.size(), 100);
    if (rc <= 0) continue;
    for (size_t i = 0; i < fds.size(); ++i) {
      if (!fds[i].revents) continue;
      Peer& p = *who[i];
      char type = 0;
      std::string body;
      std::string event;
      if (!read_frame(p.fd, type, body, clock_type::now() + std::chrono::seconds(5))) {
        event = "rank " + std::to_string(p.rank) + " exited or was killed (its connection to rank " +
                std::to_string(rank_) + " closed without a goodbye)";
      } else if (type == 'B') {
        p.done = true;  // a clean exit
        continue;
      } else if (type == 'A') {
        event = body;
      } else {
        continue;
      }
      p.done = true;
      set_failure(event);
      // Rank 0 is the hub: pass the news on to everybody else.
      if (rank_ == 0)
        for (Peer& q : peers_)
          if (&q != &p && !q.done) send_to(q, 'A', event);
    }
  }
}

}  // namespace ttt
