// trainer/comm_backends.h — internal: the constructors of the MPI and NCCL backends and the MPI
// runtime they share (the NCCL backend exchanges its unique id through MPI when MPI launched
// the job). Users call make_communicator (trainer/comm.h) instead.
#pragma once

#include <cstddef>
#include <memory>

#include "trainer/comm.h"

namespace ttt {

// Throw std::invalid_argument ("built without MPI/NCCL") when the backend was not compiled in.
std::unique_ptr<Communicator> make_mpi_communicator(const LaunchInfo& info, const CommOptions& opt);
std::unique_ptr<Communicator> make_nccl_communicator(const LaunchInfo& info, Device device, const CommOptions& opt);

// --- MPI runtime (trainer/comm_mpi.cpp) ---------------------------------------------------------
// MPI_Init on first acquire (checking MPI's rank and size against `info`), MPI_Finalize when the
// last handle is released. Throws when built without MPI.
std::shared_ptr<void> mpi_acquire(const LaunchInfo& info);
// MPI_Bcast of raw bytes over MPI_COMM_WORLD, bounded by timeout_s (then MPI_Abort).
void mpi_broadcast_bytes(void* data, size_t n, int root, double timeout_s);
// MPI_Abort(MPI_COMM_WORLD) when MPI is initialised; returns otherwise.
void mpi_abort_if_active(int exit_code);

// Prints "error: rank r of W: <why>" on stderr (one line, flushed).
void print_rank_error(const LaunchInfo& info, const std::string& why);

}  // namespace ttt
