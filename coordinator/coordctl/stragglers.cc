#include "coordinator/coordctl/stragglers.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

namespace xfer::coordinator::coordctl {

RanksView find_stragglers(const v1::RanksResponse& ranks, double threshold) {
  if (!(threshold > 0.0 && threshold <= 1.0)) {
    throw std::invalid_argument("straggler threshold " + std::to_string(threshold) +
                                " is out of range (expected 0 < threshold <= 1)");
  }
  RanksView view;
  std::vector<double> measured;
  for (const auto& rank : ranks.ranks()) {
    if (rank.images_per_second() > 0.0) measured.push_back(rank.images_per_second());
  }
  if (!measured.empty()) {
    std::sort(measured.begin(), measured.end());
    const std::size_t mid = measured.size() / 2;
    view.median_images_per_second =
        measured.size() % 2 == 1 ? measured[mid] : 0.5 * (measured[mid - 1] + measured[mid]);
  }
  for (const auto& rank : ranks.ranks()) {
    RankView row;
    row.status = rank;
    if (view.median_images_per_second > 0.0) {
      row.fraction_of_median = rank.images_per_second() / view.median_images_per_second;
      row.straggler = measured.size() >= 2 && rank.images_per_second() > 0.0 &&
                      row.fraction_of_median < threshold;
    } else {
      row.fraction_of_median = std::numeric_limits<double>::quiet_NaN();
    }
    view.ranks.push_back(row);
  }
  std::sort(view.ranks.begin(), view.ranks.end(),
            [](const RankView& a, const RankView& b) { return a.status.rank() < b.status.rank(); });
  return view;
}

}  // namespace xfer::coordinator::coordctl
