// tests/test_rendezvous.cpp — the TCP rendezvous of the NCCL backend, with ranks as threads on
// localhost: rank 0's payload reaches every rank; the watchdog reports a peer's abort message,
// a peer that vanishes without a goodbye, and stays quiet on a clean exit; timeouts and a wrong
// world size are clear errors. Run: ./build/tests/test_rendezvous
#include <doctest/doctest.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <future>
#include <memory>
#include <thread>

#include "trainer/comm.h"
#include "trainer/rendezvous.h"

using namespace ttt;

namespace {

// A port that was free a moment ago (the kernel picks it).
int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0);
  socklen_t len = sizeof(a);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

// Starts ranks 1..world-1 as threads; rank 0 runs on the calling thread.
std::vector<std::unique_ptr<TcpRendezvous>> start(int world, int port, double timeout = 10) {
  std::vector<std::future<std::unique_ptr<TcpRendezvous>>> others;
  for (int r = 1; r < world; ++r)
    others.push_back(std::async(std::launch::async, [=] {
      return std::make_unique<TcpRendezvous>("localhost", port, r, world, timeout);
    }));
  std::vector<std::unique_ptr<TcpRendezvous>> all;
  all.push_back(std::make_unique<TcpRendezvous>("localhost", port, 0, world, timeout));
  for (auto& f : others) all.push_back(f.get());
  return all;
}

// Polls `r.failure()` for up to 5 s.
std::string wait_failure(const TcpRendezvous& r) {
  for (int i = 0; i < 500; ++i) {
    std::string f = r.failure();
    if (!f.empty()) return f;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return "";
}

}  // namespace

TEST_CASE("rendezvous: rank 0's payload reaches every rank") {
  auto ranks = start(3, free_port());
  std::string id(128, '\0');
  for (size_t i = 0; i < id.size(); ++i) id[i] = static_cast<char>(i * 7);  // binary, with zeros
  std::vector<std::future<std::string>> got;
  for (int r = 1; r < 3; ++r) got.push_back(std::async(std::launch::async, [&, r] { return ranks[r]->broadcast(""); }));
  CHECK(ranks[0]->broadcast(id) == id);
  for (auto& g : got) CHECK(g.get() == id);
}

TEST_CASE("rendezvous watchdog: abort messages are relayed, vanished ranks detected, clean exits ignored") {
  auto ranks = start(3, free_port());
  for (auto& r : ranks) r->start_watchdog();

  SUBCASE("a rank that reports its failure") {
    ranks[2]->notify_abort("out of GPU memory on cuda:2");
    for (int r : {0, 1}) CHECK(wait_failure(*ranks[r]) == "rank 2 failed: out of GPU memory on cuda:2");
  }
  SUBCASE("a rank that vanishes (destroyed while an exception unwinds)") {
    try {
      auto doomed = std::move(ranks[1]);
      throw std::runtime_error("boom");
    } catch (const std::runtime_error&) {
    }
    CHECK(wait_failure(*ranks[0]) == "rank 1 is exiting on an error (see its output)");
    CHECK(wait_failure(*ranks[2]) == "rank 1 is exiting on an error (see its output)");
  }
  SUBCASE("a clean exit is not a failure") {
    ranks[2].reset();
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    CHECK(ranks[0]->failure().empty());
    CHECK(ranks[1]->failure().empty());
  }
}

TEST_CASE("rendezvous: a missing rank times out with its number; a wrong world size is refused") {
  const int port = free_port();
  auto t0 = std::chrono::steady_clock::now();
  CHECK_THROWS_WITH_AS(TcpRendezvous("localhost", port, 0, 3, 0.3), doctest::Contains("rank(s) 1, 2 did not connect"),
                       CommError);
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(5));

  const int port2 = free_port();
  auto late = std::async(std::launch::async, [=] { return std::make_unique<TcpRendezvous>("localhost", port2, 1, 3, 5); });
  CHECK_THROWS_WITH_AS(TcpRendezvous("localhost", port2, 0, 2, 5), doctest::Contains("says world size 3"), CommError);
  CHECK_THROWS_WITH_AS(late.get()->broadcast(""), doctest::Contains("world size 3"), CommError);

  CHECK_THROWS_WITH_AS(TcpRendezvous("", port, 1, 2, 0.2), doctest::Contains("needs MASTER_ADDR"), CommError);
  CHECK_THROWS_WITH_AS(TcpRendezvous("localhost", free_port(), 1, 2, 0.3), doctest::Contains("could not reach rank 0"),
                       CommError);
}
