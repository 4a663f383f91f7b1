// The generated protobuf/gRPC library builds, links and round-trips the
// dataset messages the coordinator and trainer exchange.
#include <gtest/gtest.h>

#include "xfer/v1/dataset.pb.h"

namespace {

TEST(ProtoTest, DatasetInfoRoundTrips) {
  xfer::v1::DatasetInfo info;
  info.set_name("cifar100");
  (*info.mutable_split_sizes())["train"] = 50000;
  (*info.mutable_split_sizes())["test"] = 10000;
  info.add_fine_label_names("apple");
  info.add_coarse_label_names("fruit_and_vegetables");

  std::string wire;
  ASSERT_TRUE(info.SerializeToString(&wire));
  xfer::v1::DatasetInfo back;
  ASSERT_TRUE(back.ParseFromString(wire));
  EXPECT_EQ(back.name(), "cifar100");
  EXPECT_EQ(back.split_sizes().at("train"), 50000);
  EXPECT_EQ(back.fine_label_names(0), "apple");
}

TEST(ProtoTest, ResolvedSplitRejectsGarbage) {
  xfer::v1::ResolvedSplit split;
  EXPECT_FALSE(split.ParseFromString(std::string("\xff\xff\xff\xff", 4)));
}

}  // namespace
