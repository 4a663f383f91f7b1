// Which ranks hold the job back. In data-parallel training every step waits
// for the slowest rank, so a rank well below its peers' throughput is worth a
// person's look (a slow node, a busy GPU, a data stall).
#pragma once

#include <vector>

#include "xfer/v1/coordinator.pb.h"

namespace xfer::coordinator::coordctl {

// Default: a rank below 80% of the median images/s is a straggler.
inline constexpr double kDefaultStragglerThreshold = 0.8;

struct RankView {
  v1::RankStatus status;
  // images_per_second / median; NaN when the median is 0 (nothing measured).
  double fraction_of_median = 0.0;
  bool straggler = false;
};

struct RanksView {
  // Median of images_per_second over the ranks that reported one (> 0);
  // 0 when none did.
  double median_images_per_second = 0.0;
  std::vector<RankView> ranks;  // sorted by rank
};

// Marks ranks whose images/s is below `threshold` x the median. Ranks that
// reported no throughput yet (0) are not marked: they have not started, which
// is not the same as being slow. With one measured rank nobody is marked.
// REQUIRES: 0 < threshold <= 1 (std::invalid_argument).
RanksView find_stragglers(const v1::RanksResponse& ranks,
                          double threshold = kDefaultStragglerThreshold);

}  // namespace xfer::coordinator::coordctl
