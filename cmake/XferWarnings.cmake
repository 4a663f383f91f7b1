# Warnings for our own targets only: third-party headers (LibTorch, gRPC,
# generated protobuf code) are included as SYSTEM so their warnings do not
# drown ours.
function(xfer_target_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wshadow=local
                                           -Wnon-virtual-dtor -Woverloaded-virtual)
  if(XFER_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()

option(XFER_WERROR "Treat warnings in our code as errors (CI turns this on)" OFF)
