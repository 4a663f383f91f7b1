// CRC32C, TFRecord framing, event files, the step numbering and the tags of
// coordinator/tensorboard/.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <limits>
#include <string>

#include "coordinator/tensorboard/crc32c.h"
#include "coordinator/tensorboard/epoch_scalars.h"
#include "coordinator/tensorboard/event_file.h"
#include "coordinator/tensorboard/global_epochs.h"
#include "coordinator/tensorboard/record_io.h"
#include "metrics_test_util.h"

namespace xfer::coordinator::tensorboard {
namespace {

namespace fs = std::filesystem;
using metrics::testing::TempDir;

// Known answers: the check value of the CRC-32C catalogue and the test
// vectors of RFC 3720 (iSCSI), appendix B.4.
TEST(Crc32cTest, KnownVectors) {
  EXPECT_EQ(crc32c("123456789"), 0xE3069283u);
  EXPECT_EQ(crc32c(std::string(32, '\0')), 0x8A9136AAu);
  EXPECT_EQ(crc32c(std::string(32, '\xff')), 0x62A8AB43u);
  std::string ascending;
  for (int i = 0; i < 32; ++i) ascending.push_back(static_cast<char>(i));
  EXPECT_EQ(crc32c(ascending), 0x46DD794Eu);
  std::string descending;
  for (int i = 31; i >= 0; --i) descending.push_back(static_cast<char>(i));
  EXPECT_EQ(crc32c(descending), 0x113FDB5Cu);
  EXPECT_EQ(crc32c(""), 0u);
}

TEST(Crc32cTest, ContinuesOverPieces) {
  const std::string text = "The quick brown fox jumps over the lazy dog";
  for (std::size_t cut = 0; cut <= text.size(); ++cut) {
    EXPECT_EQ(crc32c(text.substr(cut), crc32c(text.substr(0, cut))), crc32c(text)) << cut;
  }
}

TEST(Crc32cTest, MaskRoundTripsAndMatchesTheFormula) {
  EXPECT_EQ(mask_crc(0), 0xa282ead8u);
  const std::uint32_t crc = 0xE3069283u;
  EXPECT_EQ(mask_crc(crc), ((crc >> 15) | (crc << 17)) + 0xa282ead8u);
  for (std::uint32_t value : {0u, 1u, 0xE3069283u, 0xFFFFFFFFu, 0x80000000u}) {
    EXPECT_EQ(unmask_crc(mask_crc(value)), value);
  }
}

TEST(RecordIoTest, FramesLengthAndBothCrcs) {
  const std::string record = frame_record("abc");
  ASSERT_EQ(record.size(), 3 + kRecordOverhead);
  EXPECT_EQ(record.substr(0, 8), std::string("\x03\0\0\0\0\0\0\0", 8));
  auto le32 = [&](std::size_t at) {
    std::uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {
      v |= static_cast<std::uint32_t>(static_cast<unsigned char>(record[at + i])) << (8 * i);
    }
    return v;
  };
  EXPECT_EQ(le32(8), mask_crc(crc32c(record.substr(0, 8))));
  EXPECT_EQ(record.substr(12, 3), "abc");
  EXPECT_EQ(le32(15), mask_crc(crc32c("abc")));
}

TEST(RecordIoTest, ParsesWhatItFrames) {
  const std::string bytes = frame_record("first") + frame_record("") + frame_record("third");
  const ParsedRecords parsed = parse_records(bytes);
  EXPECT_EQ(parsed.problem, "");
  ASSERT_EQ(parsed.records.size(), 3u);
  EXPECT_EQ(parsed.records[0], "first");
  EXPECT_EQ(parsed.records[1], "");
  EXPECT_EQ(parsed.records[2], "third");
  EXPECT_EQ(parsed.good_bytes, bytes.size());
}

TEST(RecordIoTest, EveryFlippedByteIsCaught) {
  const std::string good = frame_record("one") + frame_record("two");
  for (std::size_t i = 0; i < good.size(); ++i) {
    std::string bad = good;
    bad[i] = static_cast<char>(bad[i] ^ 0x20);
    const ParsedRecords parsed = parse_records(bad);
    EXPECT_NE(parsed.problem, "") << "flipped byte " << i << " went unnoticed";
    // Records before the damaged one are still returned.
    EXPECT_EQ(parsed.records.size(), i < 19 ? 0u : 1u) << i;
  }
}

TEST(RecordIoTest, NamesTruncationAndCorruption) {
  const std::string good = frame_record("payload");
  EXPECT_NE(parse_records(good.substr(0, good.size() - 1)).problem.find("truncated"),
            std::string::npos);
  EXPECT_NE(parse_records(good.substr(0, 5)).problem.find("truncated header"), std::string::npos);
  std::string bad_data = good;
  bad_data[14] ^= 1;
  EXPECT_NE(parse_records(bad_data).problem.find("record 1 at offset 0: data CRC"),
            std::string::npos);
  std::string bad_length = good;
  bad_length[0] ^= 1;
  EXPECT_NE(parse_records(bad_length).problem.find("length CRC"), std::string::npos);
}

TEST(EventFileTest, FirstRecordIsTheVersionThenScalars) {
  TempDir tmp;
  EventFileWriter writer(tmp.path() / "run", "host-a", 4242);
  EXPECT_TRUE(writer.path().empty());
  ASSERT_EQ(writer.append({scalars_event(1000.5, 3, {{"train/loss", 1.25}, {"train/top1", 0.5}})}),
            "");
  const std::string name = writer.path().filename().string();
  EXPECT_EQ(name.rfind("events.out.tfevents.", 0), 0u) << name;
  EXPECT_NE(name.find(".host-a.4242"), std::string::npos) << name;
  EXPECT_TRUE(is_event_file_name(name));
  ASSERT_EQ(writer.append({scalars_event(1001.0, 4, {{"train/loss", 0.75}})}), "");

  const EventFileContents contents = read_event_file(writer.path());
  EXPECT_EQ(contents.problem, "");
  ASSERT_EQ(contents.events.size(), 3u);
  EXPECT_EQ(contents.events[0].file_version(), "brain.Event:2");
  EXPECT_DOUBLE_EQ(contents.events[0].wall_time(), 1000.5);
  EXPECT_EQ(contents.events[1].step(), 3);
  EXPECT_DOUBLE_EQ(contents.events[1].wall_time(), 1000.5);
  ASSERT_EQ(contents.events[1].summary().value_size(), 2);
  EXPECT_EQ(contents.events[1].summary().value(0).tag(), "train/loss");
  EXPECT_FLOAT_EQ(contents.events[1].summary().value(0).simple_value(), 1.25f);
  EXPECT_EQ(contents.events[1].summary().value(1).tag(), "train/top1");
  EXPECT_FLOAT_EQ(contents.events[1].summary().value(1).simple_value(), 0.5f);
  EXPECT_EQ(contents.events[2].step(), 4);
  EXPECT_FLOAT_EQ(contents.events[2].summary().value(0).simple_value(), 0.75f);
}

TEST(EventFileTest, TwoWritersNeverShareAFile) {
  TempDir tmp;
  EventFileWriter first(tmp.path(), "h", 7);
  EventFileWriter second(tmp.path(), "h", 7);  // same host, pid and (likely) second
  ASSERT_EQ(first.append({scalars_event(1, 1, {{"a", 1}})}), "");
  ASSERT_EQ(second.append({scalars_event(1, 2, {{"a", 2}})}), "");
  EXPECT_NE(first.path(), second.path());
  EXPECT_EQ(read_event_file(first.path()).events.size(), 2u);
  EXPECT_EQ(read_event_file(second.path()).events.size(), 2u);
}

TEST(EventFileTest, FailureNamesThePathAndWritingResumesAfterwards) {
  TempDir tmp;
  const fs::path blocked = tmp.path() / "run";
  std::ofstream(blocked) << "a file where the run directory should be";
  EventFileWriter writer(blocked, "h", 1);
  const std::string problem = writer.append({scalars_event(1, 1, {{"a", 1}})});
  EXPECT_NE(problem.find(blocked.string()), std::string::npos) << problem;
  EXPECT_NE(problem.find("cannot create"), std::string::npos) << problem;
  EXPECT_TRUE(writer.path().empty());

  fs::remove(blocked);
  ASSERT_EQ(writer.append({scalars_event(1, 1, {{"a", 1}})}), "");
  EXPECT_EQ(read_event_file(writer.path()).events.size(), 2u);
}

TEST(EventFileTest, ARemovedFileIsStartedAgain) {
  TempDir tmp;
  EventFileWriter writer(tmp.path(), "h", 1);
  ASSERT_EQ(writer.append({scalars_event(1, 1, {{"a", 1}})}), "");
  fs::remove_all(tmp.path());
  ASSERT_EQ(writer.append({scalars_event(2, 2, {{"a", 2}})}), "");
  const EventFileContents contents = read_event_file(writer.path());
  ASSERT_EQ(contents.events.size(), 2u);
  EXPECT_EQ(contents.events[0].file_version(), "brain.Event:2");
  EXPECT_EQ(contents.events[1].step(), 2);
}

TEST(EventFileTest, ReaderReportsATornTailAndKeepsWhatPrecedesIt) {
  TempDir tmp;
  EventFileWriter writer(tmp.path(), "h", 1);
  ASSERT_EQ(writer.append({scalars_event(1, 1, {{"a", 1}})}), "");
  const auto size = fs::file_size(writer.path());
  std::ofstream(writer.path(), std::ios::app | std::ios::binary)
      << frame_record("half a record").substr(0, 10);
  const EventFileContents contents = read_event_file(writer.path());
  EXPECT_EQ(contents.events.size(), 2u);
  EXPECT_NE(contents.problem.find("offset " + std::to_string(size)), std::string::npos)
      << contents.problem;
  EXPECT_NE(read_event_file(tmp.path() / "missing").problem.find("cannot be read"),
            std::string::npos);
}

TEST(GlobalEpochsTest, PhasesFollowEachOtherWithoutOverlap) {
  GlobalEpochs steps;
  // The trainer: epochs from 1 within each phase.
  for (int e = 1; e <= 3; ++e) EXPECT_EQ(steps.step("head", e), e);
  EXPECT_EQ(steps.step("head", 3), 3);  // validation of the same epoch
  EXPECT_EQ(steps.step("finetune", 1), 4);
  EXPECT_EQ(steps.step("finetune", 2), 5);
  EXPECT_EQ(steps.step("finetune", 2), 5);  // test after the last epoch
  EXPECT_EQ(steps.ordinal("head"), 0);
  EXPECT_EQ(steps.ordinal("finetune"), 1);
  EXPECT_EQ(steps.ordinal("full"), -1);
}

TEST(GlobalEpochsTest, ZeroBasedEpochsAndAResumedPhase) {
  GlobalEpochs zero;
  EXPECT_EQ(zero.step("head", 0), 0);
  EXPECT_EQ(zero.step("head", 1), 1);
  EXPECT_EQ(zero.step("finetune", 0), 2);
  // A phase whose first completed epoch is 3 (its first epochs ran under
  // another coordinator state): it still starts right after the last step.
  GlobalEpochs resumed;
  EXPECT_EQ(resumed.step("head", 1), 1);
  EXPECT_EQ(resumed.step("finetune", 3), 2);
  EXPECT_EQ(resumed.step("finetune", 4), 3);
}

metrics::EpochMetrics epoch_of(metrics::SplitKind split) {
  metrics::EpochMetrics m;
  m.run = "r";
  m.phase = "head";
  m.epoch = 1;
  m.split = split;
  m.loss = 2.5;
  m.top1 = 0.25;
  m.top3 = 0.5;
  m.learning_rate = 1e-3;
  m.images_per_second = 300;
  return m;
}

TEST(EpochScalarsTest, TrainCarriesRateThroughputRanksAndPhase) {
  const auto scalars = epoch_scalars(epoch_of(metrics::SplitKind::kTrain), 1, {{0, 140}, {1, 160}});
  std::vector<std::string> tags;
  for (const auto& s : scalars) tags.push_back(s.tag);
  EXPECT_EQ(tags,
            (std::vector<std::string>{"train/loss", "train/top1", "train/top3", "learning_rate",
                                      "images_per_second", "rank_0/images_per_second",
                                      "rank_1/images_per_second", "phase"}));
  EXPECT_DOUBLE_EQ(scalars[0].value, 2.5);
  EXPECT_DOUBLE_EQ(scalars[3].value, 1e-3);
  EXPECT_DOUBLE_EQ(scalars[4].value, 300);
  EXPECT_DOUBLE_EQ(scalars[6].value, 160);
  EXPECT_DOUBLE_EQ(scalars[7].value, 1);
}

TEST(EpochScalarsTest, EvaluationSplitsCarryTheirThreeFiguresAndNaNIsLeftOut) {
  auto validation = epoch_of(metrics::SplitKind::kValidation);
  const auto scalars = epoch_scalars(validation, 0, {{0, 1}});
  ASSERT_EQ(scalars.size(), 3u);
  EXPECT_EQ(scalars[0].tag, "validation/loss");
  EXPECT_EQ(scalars[2].tag, "validation/top3");
  auto test = epoch_of(metrics::SplitKind::kTest);
  test.loss = test.top1 = test.top3 = std::numeric_limits<double>::quiet_NaN();
  EXPECT_TRUE(epoch_scalars(test, 0, {}).empty());
}

}  // namespace
}  // namespace xfer::coordinator::tensorboard
