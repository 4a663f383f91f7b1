#include "trainer/train/progress.h"

#include <gtest/gtest.h>

namespace xfer::trainer::train {
namespace {

TEST(FormatDuration, MinutesAndHours) {
  EXPECT_EQ(format_duration(0), "0:00");
  EXPECT_EQ(format_duration(21.4), "0:21");
  EXPECT_EQ(format_duration(725), "12:05");
  EXPECT_EQ(format_duration(3723), "1:02:03");
  EXPECT_EQ(format_duration(-1), "?");
}

TEST(MetricTotals, MeansAndSums) {
  MetricTotals a{4.0, 1, 2, 4};
  a.add({2.0, 1, 1, 4});
  EXPECT_EQ(a.samples, 8);
  EXPECT_DOUBLE_EQ(a.loss(), 0.75);
  EXPECT_DOUBLE_EQ(a.acc(), 0.25);
  EXPECT_DOUBLE_EQ(a.acc3(), 0.375);
  EXPECT_EQ(MetricTotals{}.loss(), 0.0);  // no samples: no division by zero
}

TEST(FormatProgress, KerasLikeLine) {
  ProgressLine line;
  line.phase = "head";
  line.epoch = 1;
  line.epochs = 3;
  line.step = 40;
  line.steps = 120;
  line.train = {85.38, 12, 20, 40};
  line.images_per_second = 1234.4;
  line.elapsed_s = 10.0;
  EXPECT_EQ(format_progress(line),
            "head 1/3  40/120 [==========>...................] - ETA: 0:20 - loss: 2.1345 - acc: "
            "0.3000 - top3: 0.5000 - 1234 img/s");
}

TEST(FormatProgress, DataWaitShareWhenKnown) {
  ProgressLine line;
  line.phase = "full";
  line.step = 2;
  line.steps = 4;
  line.elapsed_s = 1.0;
  line.images_per_second = 100;
  line.data_wait = 0.0042;
  const std::string text = format_progress(line);
  EXPECT_EQ(text.substr(text.size() - 26), "100 img/s - data wait 0.4%");
  line.data_wait = 0.25;
  EXPECT_NE(format_progress(line).find(" - data wait 25%"), std::string::npos);
  line.data_wait = 7.0;  // clock noise past the whole interval: capped
  EXPECT_NE(format_progress(line).find(" - data wait 100%"), std::string::npos);
  line.data_wait = -1.0;
  EXPECT_EQ(format_progress(line).find("data wait"), std::string::npos);
}

TEST(FormatProgress, FullBarAtTheEnd) {
  ProgressLine line;
  line.phase = "finetune";
  line.step = 5;
  line.steps = 5;
  line.elapsed_s = 1.0;
  EXPECT_NE(format_progress(line).find("5/5 [==============================] - ETA: 0:00"),
            std::string::npos);
}

TEST(FormatEpochSummary, CarriesValidationAndCheckpoint) {
  EpochSummaryLine line;
  line.phase = "head";
  line.epoch = 2;
  line.epochs = 10;
  line.steps = 120;
  line.seconds = 47.2;
  line.images_per_second = 1234;
  line.train = {2.0, 1, 2, 4};
  line.val = {4.0, 2, 3, 4};
  line.learning_rate = 1e-3;
  line.checkpoint_id = "ckpt-00000003";
  line.best = true;
  EXPECT_EQ(format_epoch_summary(line),
            "head 2/10 120/120 - 47s 1234 img/s - loss: 0.5000 - acc: 0.2500 - top3: 0.5000 - "
            "val_loss: 1.0000 - val_acc: 0.5000 - val_top3: 0.7500 - lr: 1.00e-03 - checkpoint "
            "ckpt-00000003 (best)");
  line.data_wait = 0.031;
  EXPECT_NE(format_epoch_summary(line).find("lr: 1.00e-03 - data wait 3.1% - checkpoint"),
            std::string::npos);
}

}  // namespace
}  // namespace xfer::trainer::train
