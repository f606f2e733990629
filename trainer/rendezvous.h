// trainer/rendezvous.h — a TCP star between the ranks of a job, for launchers without MPI
// (torchrun-style RANK/WORLD_SIZE, srun without --mpi): rank 0 listens on MASTER_PORT, every other
// rank connects to MASTER_ADDR:MASTER_PORT (the scheme of llm.c's zero.cuh, and of torchrun's
// TCPStore). Two uses:
//   1. broadcast(): rank 0 hands a small payload to every rank (the NCCL unique id);
//   2. the watchdog: the connections stay open for the whole run, and a thread on each rank
//      watches them. A rank that fails sends "abort <reason>" (notify_abort); a rank that dies
//      without a word (killed, segfault) closes its socket. Rank 0 relays either to the others,
//      so every rank learns within ~0.1 s which rank failed and why, and its collectives stop
//      waiting (failure() is polled by the NCCL backend) instead of running into the timeout.
// A clean shutdown says goodbye first, so a rank that finishes early is not taken for a failure;
// destruction during exception unwinding counts as a failure.
//
// Wire format: frames of [type: 1 byte][length: 4 bytes, little endian][bytes]; types H (hello:
// "ttt-rendezvous-1 <rank> <world>"), P (payload), A (abort reason), B (goodbye).
#pragma once

#include <atomic>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace ttt {

class TcpRendezvous {
 public:
  // Rank 0 binds `port` on all interfaces and waits for the other world-1 ranks; the others
  // connect to addr:port, retrying while rank 0 is not up yet. Throws CommError after timeout_s
  // (rank 0 names the ranks that did not connect) or when a peer speaks another protocol,
  // announces another world size or a duplicate rank.
  TcpRendezvous(const std::string& addr, int port, int rank, int world, double timeout_s);
  ~TcpRendezvous();  // goodbye to the peers, then close
  TcpRendezvous(const TcpRendezvous&) = delete;
  TcpRendezvous& operator=(const TcpRendezvous&) = delete;

  // Returns rank 0's `payload` on every rank (the argument is ignored on the others).
  std::string broadcast(const std::string& payload);

  // Starts watching the connections (call after the last broadcast).
  void start_watchdog();
  // "" while all peers are alive; otherwise what happened ("rank 1 failed: <reason>", "rank 2
  // exited or was killed (its connection closed)").
  std::string failure() const;
  // Best effort: tells the peers that this rank is failing, before it exits.
  void notify_abort(const std::string& why);

  int rank() const { return rank_; }
  int world() const { return world_; }

 private:
  struct Peer {
    int fd = -1;
    int rank = -1;
    bool done = false;  // said goodbye or failed: no longer watched
  };
  void serve(const std::string& addr, int port, double timeout_s);
  void join(const std::string& addr, int port, double timeout_s);
  void watch();
  void set_failure(const std::string& what);
  void send_to(Peer& p, char type, const std::string& body);

  int rank_, world_;
  double timeout_s_;
  std::vector<Peer> peers_;  // rank 0: ranks 1..W-1; others: rank 0 only
  mutable std::mutex mu_;    // failure_ and sends
  std::string failure_;
  std::atomic<bool> stop_{false};
  std::thread watchdog_;
};

}  // namespace ttt
