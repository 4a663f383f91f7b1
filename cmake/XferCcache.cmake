# ccache, when installed, caches every compile: a rebuild after `rm -rf build`,
# a branch switch or a fresh clone on the same machine reuses the objects
# (docs/testing.md, "Build time"). It saves nothing on a machine's first build.
# -DXFER_CCACHE=OFF compiles without it; a CMAKE_CXX_COMPILER_LAUNCHER given
# on the command line wins.
option(XFER_CCACHE "Compile through ccache when it is installed" ON)
find_program(XFER_CCACHE_PROGRAM ccache)
if(XFER_CCACHE AND XFER_CCACHE_PROGRAM AND NOT CMAKE_CXX_COMPILER_LAUNCHER)
  set(CMAKE_C_COMPILER_LAUNCHER ${XFER_CCACHE_PROGRAM})
  set(CMAKE_CXX_COMPILER_LAUNCHER ${XFER_CCACHE_PROGRAM})
  message(STATUS "ccache: ${XFER_CCACHE_PROGRAM}")
endif()
