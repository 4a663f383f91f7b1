// XFER_VECTOR_CLONES before a function with a hot, auto-vectorisable loop:
// GCC builds it three times, for SSE2 (any x86-64), AVX2 and AVX-512F, and
// picks one when the program loads, by the CPU it runs on (an ifunc). The
// project compiles for baseline x86-64, where the loop would get 4-float
// vectors at most.
#pragma once

#define XFER_VECTOR_CLONES __attribute__((target_clones("default", "avx2", "avx512f")))
