// How checkpoints of one run are ranked, and which of them retention keeps.
// Pure functions over records, so the rules are tested without a disk.
#pragma once

#include <string>
#include <unordered_set>
#include <vector>

#include "coordinator/checkpoint/checkpoint_types.h"

namespace xfer::coordinator::checkpoint {

// True when `a` ranks strictly better than `b` by the metric and direction
// of `a` (a run uses one metric and direction; the store enforces it). NaN
// ranks below every number; on a tie the earlier commit wins, as Keras'
// save_best_only keeps the first checkpoint to reach a value.
bool ranks_better(const CheckpointRecord& a, const CheckpointRecord& b);

// True when `a` is later than `b` by (epoch, step); on a tie, the later
// commit is the later one.
bool is_later(const CheckpointRecord& a, const CheckpointRecord& b);

// Sorts `records` (one run) into `order` (checkpoint_types.h) with the two
// rules above. Records differ in sequence, so the order is total.
void sort_records(std::vector<CheckpointRecord>& records, ListOrder order);

// The ids retention keeps among `records` (one run): the best `keep_best`
// of each phase (meta.phase), the last `keep_last` overall, and
// `always_keep` (the checkpoint just committed).
std::unordered_set<std::string> retained_ids(const std::vector<CheckpointRecord>& records,
                                             int keep_best, int keep_last,
                                             const std::string& always_keep);

}  // namespace xfer::coordinator::checkpoint
