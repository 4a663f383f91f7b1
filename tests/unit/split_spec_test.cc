#include "coordinator/dataset/split_spec.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace xfer::coordinator::dataset {
namespace {

const std::map<std::string, std::int64_t> kCifarSizes = {{"train", 50000}, {"test", 10000}};

struct RangeCase {
  std::string spec;
  std::map<std::string, std::int64_t> sizes;
  std::vector<IndexRange> expected;
};

class ResolveTableTest : public ::testing::TestWithParam<RangeCase> {};

TEST_P(ResolveTableTest, SelectsExpectedRanges) {
  const RangeCase& c = GetParam();
  const ResolvedSplit resolved = resolve_split(c.spec, c.sizes);
  EXPECT_EQ(resolved.ranges, c.expected) << c.spec << " -> " << resolved.to_absolute_spec();
  // The absolute form resolves back to the same ranges.
  EXPECT_EQ(resolve_split(resolved.to_absolute_spec(), c.sizes).ranges, c.expected) << c.spec;
}

// Expected ranges worked out by hand from the TFDS rules in split_spec.h;
// the first group are the examples of TFDS's split guide on a 50,000-record
// train split.
INSTANTIATE_TEST_SUITE_P(
    Specs, ResolveTableTest,
    ::testing::Values(
        RangeCase{"train", kCifarSizes, {{"train", 0, 50000}}},
        RangeCase{"test", kCifarSizes, {{"test", 0, 10000}}},
        RangeCase{"train[0%:20%]", kCifarSizes, {{"train", 0, 10000}}},
        RangeCase{"train[:20%]", kCifarSizes, {{"train", 0, 10000}}},
        RangeCase{"train[20%:]", kCifarSizes, {{"train", 10000, 50000}}},
        RangeCase{"train[0:10000]", kCifarSizes, {{"train", 0, 10000}}},
        RangeCase{"train[10000:]", kCifarSizes, {{"train", 10000, 50000}}},
        RangeCase{"train[:10%]", kCifarSizes, {{"train", 0, 5000}}},
        RangeCase{"train[-80%:]", kCifarSizes, {{"train", 10000, 50000}}},
        RangeCase{"train[:-20%]", kCifarSizes, {{"train", 0, 40000}}},
        RangeCase{"train[-10:]", kCifarSizes, {{"train", 49990, 50000}}},
        RangeCase{"train[:1_000]", kCifarSizes, {{"train", 0, 1000}}},
        RangeCase{"test[:2500]", kCifarSizes, {{"test", 0, 2500}}},
        RangeCase{"train[:50%]+test", kCifarSizes, {{"train", 0, 25000}, {"test", 0, 10000}}},
        RangeCase{"test + train[:10]", kCifarSizes, {{"test", 0, 10000}, {"train", 0, 10}}},
        RangeCase{
            "train[:25%]+train[75%:]", kCifarSizes, {{"train", 0, 12500}, {"train", 37500, 50000}}},
        RangeCase{"train[:100%]", kCifarSizes, {{"train", 0, 50000}}},
        RangeCase{"train[-100%:]", kCifarSizes, {{"train", 0, 50000}}},
        // Rounding: round(p * n / 100), halves to even (Python's round()).
        RangeCase{"train[:33%]", {{"train", 10}}, {{"train", 0, 3}}},  // 3.3 -> 3
        RangeCase{"train[:67%]", {{"train", 10}}, {{"train", 0, 7}}},  // 6.7 -> 7
        RangeCase{"train[:50%]", {{"train", 5}}, {{"train", 0, 2}}},   // 2.5 -> 2
        RangeCase{"train[:50%]", {{"train", 7}}, {{"train", 0, 4}}},   // 3.5 -> 4
        RangeCase{"train[:10%]", {{"train", 25}}, {{"train", 0, 2}}},  // 2.5 -> 2
        RangeCase{"train[:10%]", {{"train", 35}}, {{"train", 0, 4}}},  // 3.5 -> 4
        RangeCase{"train[-50%:]", {{"train", 5}}, {{"train", 3, 5}}},  // -2.5 -> -2
        RangeCase{"train[20%:]", {{"train", 1}}, {{"train", 0, 1}}},   // 0.2 -> 0
        // A term that selects nothing is dropped from a non-empty union.
        RangeCase{"train[:0]+test", kCifarSizes, {{"test", 0, 10000}}}));

struct RejectCase {
  std::string spec;
  std::string message_part;
};

class RejectTableTest : public ::testing::TestWithParam<RejectCase> {};

TEST_P(RejectTableTest, RejectsWithMessageQuotingSpec) {
  const RejectCase& c = GetParam();
  try {
    resolve_split(c.spec, kCifarSizes);
    FAIL() << "expected '" << c.spec << "' to be rejected";
  } catch (const SplitSpecError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("invalid split spec"), std::string::npos) << message;
    EXPECT_NE(message.find(c.message_part), std::string::npos)
        << "spec '" << c.spec << "': message '" << message << "' lacks '" << c.message_part << "'";
  }
}

INSTANTIATE_TEST_SUITE_P(
    Specs, RejectTableTest,
    ::testing::Values(
        RejectCase{"", "empty spec"}, RejectCase{"   ", "empty spec"},
        RejectCase{"train+", "empty term"}, RejectCase{"+test", "empty term"},
        RejectCase{"valid",
                   "unknown split 'valid' (expected one of: test (10000 records), "
                   "train (50000 records))"},
        RejectCase{"train[:20%", "no closing ']'"}, RejectCase{"train(:20%)", "unexpected '('"},
        RejectCase{"[:20%]", "does not start with a split name"},
        RejectCase{"train[5]", "single index"}, RejectCase{"train[:]", "empty slice"},
        RejectCase{"train[1:2:3]", "more than one ':'"},
        RejectCase{"train[:120%]", "percent bound 120% in 'train[:120%]' is out of range"},
        RejectCase{"train[-101%:]", "out of range (expected -100% to 100%)"},
        RejectCase{"train[0:60000]", "out of range for split 'train' of 50000 records"},
        RejectCase{"test[-10001:]", "expected bounds in -10000..10000"},
        RejectCase{"train[10:50%]", "mixes a percent and an absolute bound"},
        RejectCase{"train[abc:]", "bad bound 'abc'"},
        RejectCase{"train[1__0:]", "bad bound '1__0'"},
        RejectCase{"train[_10:]", "bad bound '_10'"},
        RejectCase{"train[1.5%:]", "bad bound '1.5%'"},
        RejectCase{"train[:4shard]", "shard slices"},
        RejectCase{"train[99999999999999999999:]", "too large"},
        RejectCase{"train[30:10]", "starts at record 30 after it ends at record 10"},
        RejectCase{"train[60%:40%]", "starts at record 30000 after it ends at record 20000"},
        RejectCase{"train[:50%]+train[40%:]", "terms overlap on records 20000..24999"},
        RejectCase{"train+train", "terms overlap"},
        RejectCase{"train[10:10]", "selects no records"}));

TEST(SplitSpecTest, ParseKeepsTermsAndCanonicalText) {
  const SplitSpec spec = SplitSpec::parse(" train[ :20% ] +  test[-5:] ");
  ASSERT_EQ(spec.slices().size(), 2u);
  EXPECT_EQ(spec.slices()[0], (SplitSlice{"train", std::nullopt, 20, SliceUnit::kPercent}));
  EXPECT_EQ(spec.slices()[1], (SplitSlice{"test", -5, std::nullopt, SliceUnit::kAbsolute}));
  EXPECT_EQ(spec.to_string(), "train[:20%]+test[-5:]");
}

TEST(SplitSpecTest, UnknownSplitErrorListsKnownSplitsWhenNoneAreLoaded) {
  EXPECT_THROW(resolve_split("train", {}), SplitSpecError);
}

TEST(SplitSpecTest, LocateWalksRangesInOrder) {
  const ResolvedSplit split = resolve_split("train[10:12]+test[:2]", kCifarSizes);
  ASSERT_EQ(split.size(), 4);
  const std::vector<std::pair<std::string, std::int64_t>> expected = {
      {"train", 10}, {"train", 11}, {"test", 0}, {"test", 1}};
  for (std::int64_t i = 0; i < 4; ++i) {
    const auto [name, index] = split.locate(i);
    EXPECT_EQ(*name, expected[i].first);
    EXPECT_EQ(index, expected[i].second);
  }
  EXPECT_THROW(split.locate(4), std::out_of_range);
  EXPECT_THROW(split.locate(-1), std::out_of_range);
}

TEST(EvenSplitsTest, DistributesRemainderToFirstParts) {
  // 10 records in 3 parts: 4, 3, 3 (tfds.even_splits, drop_remainder=False).
  const ResolvedSplit split = resolve_split("train", {{"train", 10}});
  const auto parts = even_splits(split, 3);
  ASSERT_EQ(parts.size(), 3u);
  EXPECT_EQ(parts[0].ranges, (std::vector<IndexRange>{{"train", 0, 4}}));
  EXPECT_EQ(parts[1].ranges, (std::vector<IndexRange>{{"train", 4, 7}}));
  EXPECT_EQ(parts[2].ranges, (std::vector<IndexRange>{{"train", 7, 10}}));
  EXPECT_EQ(parts[1].spec, "train[4:7]");
}

TEST(EvenSplitsTest, DropRemainderGivesEqualParts) {
  const ResolvedSplit split = resolve_split("train", {{"train", 10}});
  const auto parts = even_splits(split, 3, Remainder::kDrop);
  ASSERT_EQ(parts.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(parts[i].ranges, (std::vector<IndexRange>{{"train", 3 * i, 3 * i + 3}}));
  }
}

TEST(EvenSplitsTest, EachTermOfAUnionIsDividedSeparately) {
  const ResolvedSplit split = resolve_split("train[:20%]+test[:2500]", kCifarSizes);
  const auto parts = even_splits(split, 2);
  ASSERT_EQ(parts.size(), 2u);
  EXPECT_EQ(parts[0].to_absolute_spec(), "train[0:5000]+test[0:1250]");
  EXPECT_EQ(parts[1].to_absolute_spec(), "train[5000:10000]+test[1250:2500]");
}

TEST(EvenSplitsTest, PartsCoverEveryRecordExactlyOnce) {
  for (int n : {1, 2, 3, 7, 16}) {
    const ResolvedSplit split =
        resolve_split("train[:33%]+test[-17:]", {{"train", 101}, {"test", 40}});
    const auto parts = even_splits(split, n);
    std::int64_t total = 0;
    std::int64_t smallest = split.size(), largest = 0;
    for (const auto& part : parts) {
      total += part.size();
      smallest = std::min(smallest, part.size());
      largest = std::max(largest, part.size());
    }
    EXPECT_EQ(total, split.size()) << "n=" << n;
    EXPECT_LE(largest - smallest, 2) << "n=" << n;  // at most one extra per term
  }
}

TEST(EvenSplitsTest, MorePartsThanRecordsLeavesSomeEmpty) {
  const ResolvedSplit split = resolve_split("train", {{"train", 2}});
  const auto parts = even_splits(split, 4);
  ASSERT_EQ(parts.size(), 4u);
  EXPECT_EQ(parts[0].size(), 1);
  EXPECT_EQ(parts[1].size(), 1);
  EXPECT_EQ(parts[2].size(), 0);
  EXPECT_EQ(parts[3].size(), 0);
}

TEST(EvenSplitsTest, RejectsNonPositiveCount) {
  const ResolvedSplit split = resolve_split("train", kCifarSizes);
  try {
    even_splits(split, 0);
    FAIL() << "n = 0 accepted";
  } catch (const SplitSpecError& e) {
    EXPECT_NE(std::string(e.what()).find("n = 0 (expected n >= 1)"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace xfer::coordinator::dataset
