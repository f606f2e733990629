# third_party/deps.cmake — finds the system packages the project uses (scripts/setup.sh installs
# them from Debian; the GPU machine has them from Ubuntu). No code is vendored.

find_package(OpenMP REQUIRED COMPONENTS CXX)
find_package(Threads REQUIRED)

# OpenBLAS: Debian puts cblas.h under an openblas-<variant>/ include dir.
find_path(OPENBLAS_INCLUDE_DIR cblas.h
  PATH_SUFFIXES openblas-pthread openblas-openmp openblas x86_64-linux-gnu/openblas-pthread
                x86_64-linux-gnu/openblas-openmp x86_64-linux-gnu
  PATHS /usr/include /usr/local/include)
find_library(OPENBLAS_LIBRARY NAMES openblas
  PATH_SUFFIXES openblas-pthread openblas-openmp
  PATHS /usr/lib/x86_64-linux-gnu /usr/lib /usr/local/lib)
if(NOT OPENBLAS_INCLUDE_DIR OR NOT OPENBLAS_LIBRARY)
  message(FATAL_ERROR "OpenBLAS not found: run scripts/setup.sh (Debian package libopenblas-dev)")
endif()
add_library(ttt_openblas INTERFACE)
target_include_directories(ttt_openblas INTERFACE ${OPENBLAS_INCLUDE_DIR})
target_link_libraries(ttt_openblas INTERFACE ${OPENBLAS_LIBRARY})

find_package(doctest QUIET)
if(NOT doctest_FOUND)
  find_path(DOCTEST_INCLUDE_DIR doctest/doctest.h REQUIRED)
  add_library(doctest::doctest INTERFACE IMPORTED)
  target_include_directories(doctest::doctest INTERFACE ${DOCTEST_INCLUDE_DIR})
endif()

# --- data/ and trainer/ dependencies ---------------------------------------------------------------
find_package(PkgConfig REQUIRED)
find_package(HDF5 REQUIRED COMPONENTS C)
add_library(ttt_hdf5 INTERFACE)
target_include_directories(ttt_hdf5 INTERFACE ${HDF5_INCLUDE_DIRS})
target_link_libraries(ttt_hdf5 INTERFACE ${HDF5_LIBRARIES})
target_compile_definitions(ttt_hdf5 INTERFACE ${HDF5_DEFINITIONS})

pkg_check_modules(SENTENCEPIECE REQUIRED IMPORTED_TARGET sentencepiece)
pkg_check_modules(ZSTD REQUIRED IMPORTED_TARGET libzstd)
find_package(yaml-cpp REQUIRED)
if(TARGET yaml-cpp::yaml-cpp)
  set(TTT_YAML_TARGET yaml-cpp::yaml-cpp)
else()
  set(TTT_YAML_TARGET yaml-cpp)  # yaml-cpp 0.7 exports the plain target name
endif()
find_package(spdlog REQUIRED)
# OpenSSL's libcrypto (libssl-dev): SHA-256 of tokenizer models (data/sha256.cpp).
find_package(OpenSSL REQUIRED COMPONENTS Crypto)
# utfcpp (libutfcpp-dev, header-only): UTF-8 validation of input text (data/text_sources.cpp).
# Debian ships a CMake config (target utf8cpp); older packages only the headers.
find_package(utf8cpp QUIET)
if(NOT TARGET utf8cpp)
  find_path(UTF8CPP_INCLUDE_DIR utf8.h PATH_SUFFIXES utf8cpp)
  if(NOT UTF8CPP_INCLUDE_DIR)
    message(FATAL_ERROR "utfcpp not found: run scripts/setup.sh (Debian package libutfcpp-dev)")
  endif()
  add_library(utf8cpp INTERFACE IMPORTED)
  target_include_directories(utf8cpp INTERFACE ${UTF8CPP_INCLUDE_DIR})
endif()
find_package(CLI11 REQUIRED)
find_package(nlohmann_json REQUIRED)

find_program(CCACHE_PROGRAM ccache)
if(CCACHE_PROGRAM)
  set(CMAKE_CXX_COMPILER_LAUNCHER ${CCACHE_PROGRAM})
  set(CMAKE_CUDA_COMPILER_LAUNCHER ${CCACHE_PROGRAM})
endif()

# --- distributed training (trainer/comm_*.cpp): both optional ------------------------------------
# MPI (Debian's OpenMPI: libopenmpi-dev) carries CPU ranks and the NCCL id under mpirun. Without
# it the build works and the MPI backend reports "built without MPI".
find_package(MPI COMPONENTS C QUIET)
if(MPI_C_FOUND)
  message(STATUS "MPI found (${MPI_C_LIBRARIES}): the mpi backend is built")
else()
  message(WARNING "MPI not found: ttt is built without the mpi backend (install libopenmpi-dev)")
endif()
# NCCL has no Debian package; it comes with the CUDA toolkit image (nccl.h, libnccl.so beside
# cuBLAS). -DNCCL_ROOT=<prefix> points at another install.
if(TTT_CUDA)
  find_path(NCCL_INCLUDE_DIR nccl.h HINTS ${NCCL_ROOT} ${CUDAToolkit_INCLUDE_DIRS} /usr/local/cuda
            PATH_SUFFIXES include)
  find_library(NCCL_LIBRARY NAMES nccl HINTS ${NCCL_ROOT} ${CUDAToolkit_LIBRARY_DIR} /usr/local/cuda
               PATH_SUFFIXES lib64 lib)
  if(NCCL_INCLUDE_DIR AND NCCL_LIBRARY)
    message(STATUS "NCCL found (${NCCL_LIBRARY}): the nccl backend is built")
    add_library(ttt_nccl INTERFACE)
    target_include_directories(ttt_nccl INTERFACE ${NCCL_INCLUDE_DIR})
    target_link_libraries(ttt_nccl INTERFACE ${NCCL_LIBRARY} CUDA::cudart)
  else()
    message(WARNING "NCCL not found: ttt is built without the nccl backend (multi-GPU training)")
  endif()
endif()
