#include "coordinator/checkpoint/retention.h"

#include <algorithm>
#include <cmath>
#include <map>
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

void sort_records(std::vector<CheckpointRecord>& records, ListOrder order) {
  switch (order) {
    case ListOrder::kEarliestFirst:
      std::sort(records.begin(), records.end(),
                [](const auto& a, const auto& b) { return is_later(b, a); });
      return;
    case ListOrder::kBestFirst:
      std::sort(records.begin(), records.end(), ranks_better);
      return;
    case ListOrder::kLatestFirst:
      std::sort(records.begin(), records.end(), is_later);
      return;
  }
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
  // Best per phase: fine-tuning ranks by the same validation loss as head
  // training, and the job restores the best head checkpoint before it
  // fine-tunes, so a better fine-tuning checkpoint must not push it out.
  std::map<std::string, std::vector<const CheckpointRecord*>> by_phase;
  for (const auto* record : order) by_phase[record->meta.phase].push_back(record);
  for (auto& [phase, ranked] : by_phase) {
    std::sort(ranked.begin(), ranked.end(),
              [](const auto* a, const auto* b) { return ranks_better(*a, *b); });
    for (int i = 0; i < keep_best && i < static_cast<int>(ranked.size()); ++i) {
      keep.insert(ranked[static_cast<std::size_t>(i)]->id);
    }
  }
  std::sort(order.begin(), order.end(),
            [](const auto* a, const auto* b) { return is_later(*a, *b); });
  take_first(keep_last);
  return keep;
}

}  // namespace xfer::coordinator::checkpoint
