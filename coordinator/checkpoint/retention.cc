#include "coordinator/checkpoint/retention.h"

#include <algorithm>
#include <cmath>
#include <tuple>

namespace xfer::coordinator::checkpoint {

bool ranks_better(const CheckpointRecord& a, const CheckpointRecord& b) {
  const double x = a.meta.metric_value;
  const double y = b.meta.metric_value;
  if (std::isnan(x) != std::isnan(y)) return std::isnan(y);
  if (!std::isnan(x) && x != y) {
    return a.meta.direction == Direction::kMaximize ? x > y : x < y;
  }
  return a.sequence < b.sequence;
}

bool is_later(const CheckpointRecord& a, const CheckpointRecord& b) {
  return std::tie(a.meta.epoch, a.meta.step, a.sequence) >
         std::tie(b.meta.epoch, b.meta.step, b.sequence);
}

std::unordered_set<std::string> retained_ids(const std::vector<CheckpointRecord>& records,
                                             int keep_best, int keep_last,
                                             const std::string& always_keep) {
  std::unordered_set<std::string> keep{always_keep};
  std::vector<const CheckpointRecord*> order;
  for (const auto& record : records) order.push_back(&record);
  const auto take_first = [&](int count) {
    for (int i = 0; i < count && i < static_cast<int>(order.size()); ++i) keep.insert(order[i]->id);
  };
  std::sort(order.begin(), order.end(),
            [](const auto* a, const auto* b) { return ranks_better(*a, *b); });
  take_first(keep_best);
  std::sort(order.begin(), order.end(),
            [](const auto* a, const auto* b) { return is_later(*a, *b); });
  take_first(keep_last);
  return keep;
}

}  // namespace xfer::coordinator::checkpoint
