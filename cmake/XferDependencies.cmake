# Every external dependency, found once. Each is wrapped in an xfer:: target
# so the parts link by name and third-party headers come in as SYSTEM.
#
# LibTorch: Debian's libtorch-dev (CPU) by default. For a CUDA LibTorch, put
# its folder first on CMAKE_PREFIX_PATH:
#   cmake -S . -B build -DCMAKE_PREFIX_PATH=/opt/libtorch
# CUDA toolkit and NCCL: /usr/local/cuda by default; CUDAToolkit_ROOT and
# NCCL_ROOT (environment or cache) point elsewhere.

find_package(Threads REQUIRED)

# --- LibTorch --------------------------------------------------------------
find_package(Torch REQUIRED CONFIG)
add_library(xfer_torch INTERFACE)
add_library(xfer::torch ALIAS xfer_torch)
target_link_libraries(xfer_torch INTERFACE ${TORCH_LIBRARIES})
target_include_directories(xfer_torch SYSTEM INTERFACE ${TORCH_INCLUDE_DIRS})
# TORCH_CXX_FLAGS carries the libstdc++ ABI flag LibTorch was built with.
separate_arguments(_xfer_torch_flags UNIX_COMMAND "${TORCH_CXX_FLAGS}")
target_compile_options(xfer_torch INTERFACE ${_xfer_torch_flags})
if(NOT Torch_VERSION AND DEFINED Torch_VERSION_STRING)
  set(Torch_VERSION ${Torch_VERSION_STRING})
endif()

# --- MPI -------------------------------------------------------------------
find_package(MPI REQUIRED COMPONENTS CXX)

# --- protobuf and gRPC -----------------------------------------------------
# protobuf's CMake package is preferred; Debian 12 ships only the pkg-config
# files, so fall back to CMake's FindProtobuf module there.
find_package(Protobuf CONFIG QUIET)
if(NOT Protobuf_FOUND)
  find_package(Protobuf REQUIRED)
endif()
find_package(gRPC REQUIRED CONFIG)
if(NOT TARGET gRPC::grpc_cpp_plugin)
  message(FATAL_ERROR "gRPC found but grpc_cpp_plugin is missing: install protobuf-compiler-grpc")
endif()

# --- small libraries ---------------------------------------------------------
find_package(spdlog REQUIRED CONFIG)
find_package(CLI11 REQUIRED CONFIG)
find_package(nlohmann_json REQUIRED CONFIG)
find_package(OpenSSL REQUIRED)
if(BUILD_TESTING)
  find_package(GTest REQUIRED)
endif()

# --- CUDA toolkit and NCCL ---------------------------------------------------
# WITH_NCCL=AUTO turns NCCL on when the toolkit and nccl.h are both found.
# The build machines have /usr/local/cuda without a GPU: NCCL code is then
# compiled and linked, and its runtime tests skip.
if(NOT DEFINED CUDAToolkit_ROOT AND NOT DEFINED ENV{CUDAToolkit_ROOT} AND EXISTS /usr/local/cuda)
  set(CUDAToolkit_ROOT /usr/local/cuda)
endif()
set(XFER_WITH_NCCL OFF)
if(NOT WITH_NCCL STREQUAL "OFF")
  find_package(CUDAToolkit QUIET)
  set(_xfer_nccl_hints $ENV{NCCL_ROOT} ${NCCL_ROOT} ${CUDAToolkit_LIBRARY_ROOT})
  find_path(NCCL_INCLUDE_DIR nccl.h HINTS ${_xfer_nccl_hints} ${CUDAToolkit_INCLUDE_DIRS}
            PATH_SUFFIXES include)
  find_library(NCCL_LIBRARY nccl HINTS ${_xfer_nccl_hints} ${CUDAToolkit_LIBRARY_DIR}
               PATH_SUFFIXES lib lib64)
  if(CUDAToolkit_FOUND AND NCCL_INCLUDE_DIR AND NCCL_LIBRARY)
    set(XFER_WITH_NCCL ON)
    add_library(xfer_nccl INTERFACE)
    add_library(xfer::nccl ALIAS xfer_nccl)
    target_include_directories(xfer_nccl SYSTEM INTERFACE ${NCCL_INCLUDE_DIR})
    target_link_libraries(xfer_nccl INTERFACE ${NCCL_LIBRARY} CUDA::cudart)
    message(STATUS "NCCL: ${NCCL_LIBRARY} (CUDA ${CUDAToolkit_VERSION})")
  elseif(WITH_NCCL STREQUAL "ON")
    message(FATAL_ERROR "WITH_NCCL=ON but NCCL was not found (CUDA toolkit found: "
                        "${CUDAToolkit_FOUND}, nccl.h: ${NCCL_INCLUDE_DIR}, libnccl: "
                        "${NCCL_LIBRARY}). Set CUDAToolkit_ROOT or NCCL_ROOT, or WITH_NCCL=OFF.")
  else()
    message(STATUS "NCCL: not found, the CUDA all-reduce path is not built (WITH_NCCL=AUTO)")
  endif()
endif()
if(XFER_WITH_NCCL)
  set(XFER_WITH_NCCL_01 1)
else()
  set(XFER_WITH_NCCL_01 0)
  set(CUDAToolkit_VERSION "")
endif()
