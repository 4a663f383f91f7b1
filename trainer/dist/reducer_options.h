// Settings of the gradient Reducer, apart from reducer.h so that flag parsing
// does not pull in LibTorch.
#pragma once

#include <chrono>

namespace xfer::trainer::dist {

struct ReducerOptions {
  // Bucket capacity in MiB (--bucket-mb). A bucket is closed once it holds at
  // least this much, so a tiny value gives one parameter per bucket and a huge
  // one a single bucket. Default: 25, as PyTorch DDP.
  // REQUIRES: > 0.
  double bucket_mb = 25.0;

  // When true, a bucket is all-reduced as soon as backward has produced all
  // its gradients, while backward still runs. When false, every bucket is
  // reduced after backward (the benchmark's "overlap off"). Default: true.
  bool overlap = true;

  // When true, gradients end as the mean over ranks (what makes W ranks x
  // batch B equal 1 rank x batch W*B). When false, they end as the sum: the
  // per-gradient division is skipped, for callers that fold 1/W into the
  // loss or learning rate. Default: true.
  bool average = true;

  // How long finishing a step may wait for one bucket. Default: 10 minutes.
  // REQUIRES: > 0.
  std::chrono::milliseconds timeout = std::chrono::minutes(10);

  // Record the order of gradient-ready hooks and bucket launches (tests).
  // Default: false.
  bool trace = false;
};

}  // namespace xfer::trainer::dist
