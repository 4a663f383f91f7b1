// TFDS-style split specs: which records of which split a run reads.
//
//   train                  the whole train split
//   train[:20%]            its first 20%         train[20%:]   the other 80%
//   train[0:10000]         records 0..9999       test[:2500]   the first 2,500 test records
//   train[-10%:]           the last 10%          test[:-500]   all but the last 500
//   train[:50%]+test       a union, in order
//
// Rules (those of tensorflow_datasets' "closest" rounding, with two stricter
// checks marked *):
//   - Bounds are integers, optionally with '_' between digits (1_000), and
//     negative bounds count from the end, as in Python slices.
//   - A percent bound p of a split of n records becomes round(p * n / 100),
//     rounding halves to even (Python's round(), which TFDS uses): 50% of 5
//     records is 2, 50% of 7 is 4. Percents must lie in [-100, 100].
//   - An absolute bound must lie in [-n, n].
//   - Both bounds of one slice use the same unit. (*TFDS silently treats
//     `train[10:50%]` as `train[10%:50%]`; we reject it.)
//   - A slice whose start is after its end is rejected, and so is a union
//     whose terms overlap (*TFDS reads overlapping records twice) or which
//     selects no record at all.
//   - Shard units (`train[:4shard]`) and single indices (`train[5]`) are not
//     supported: the CIFAR-100 files have no shards, and TFDS rejects single
//     absolute or percent indices too.
// Every rejection is a SplitSpecError whose message quotes the spec and says
// what is wrong and what was expected.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace xfer::coordinator::dataset {

class SplitSpecError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

enum class SliceUnit { kAbsolute, kPercent };

// One '+'-separated term of a spec, as written.
struct SplitSlice {
  std::string split;
  std::optional<std::int64_t> from;  // may be negative: counts from the end
  std::optional<std::int64_t> to;
  SliceUnit unit = SliceUnit::kAbsolute;

  // Canonical text: "train", "train[:20%]", "test[100:-5]".
  std::string to_string() const;
  bool operator==(const SplitSlice& other) const;
};

// A parsed spec. Parsing needs no dataset; resolve_split() applies it to one.
class SplitSpec {
 public:
  // Throws SplitSpecError for a malformed spec.
  static SplitSpec parse(std::string_view text);

  const std::vector<SplitSlice>& slices() const { return slices_; }
  // Canonical text, terms joined by '+'.
  std::string to_string() const;

 private:
  std::vector<SplitSlice> slices_;
};

// Records [begin, end) of one split.
struct IndexRange {
  std::string split;
  std::int64_t begin = 0;
  std::int64_t end = 0;

  std::int64_t size() const { return end - begin; }
  bool operator==(const IndexRange& other) const;
};

// A spec applied to a dataset: the ranges it selects, in spec order. Ranges
// that select nothing are left out.
struct ResolvedSplit {
  std::string spec;  // the spec this came from
  std::vector<IndexRange> ranges;

  std::int64_t size() const;
  // The ranges as an absolute spec ("train[10000:50000]+test[0:2500]"),
  // which resolves back to the same ranges.
  std::string to_absolute_spec() const;
  // The position-th record of the selection, as (split, index in split).
  // Throws std::out_of_range past size().
  std::pair<const std::string*, std::int64_t> locate(std::int64_t position) const;
};

// Applies `spec` to splits of the given sizes (split name -> record count).
// Throws SplitSpecError naming the spec for unknown splits, out-of-range
// bounds, inverted slices, overlapping terms or an empty selection.
ResolvedSplit resolve_split(const SplitSpec& spec,
                            const std::map<std::string, std::int64_t>& split_sizes);
// parse() then resolve_split().
ResolvedSplit resolve_split(std::string_view spec,
                            const std::map<std::string, std::int64_t>& split_sizes);

// What even_splits does with records that do not divide evenly.
enum class Remainder {
  kDistribute,  // the first (size % n) parts get one record more (TFDS default)
  kDrop,        // every part gets size / n records; the rest are not read
};

// Cuts a resolved split into n contiguous parts, as tfds.even_splits does:
// each range of the union is divided separately and part i takes the i-th
// piece of every range, so each part samples every term of the union. A part
// may be empty when a range has fewer than n records. Throws SplitSpecError
// for n < 1.
std::vector<ResolvedSplit> even_splits(const ResolvedSplit& split, int n,
                                       Remainder remainder = Remainder::kDistribute);

}  // namespace xfer::coordinator::dataset
