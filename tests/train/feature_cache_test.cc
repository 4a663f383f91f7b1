#include "trainer/train/feature_cache.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <stdexcept>
#include <vector>

namespace xfer::trainer::train {
namespace {

namespace fs = std::filesystem;

class FeatureCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("feature_cache_test." + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  static std::vector<float> row(std::int64_t key, std::int64_t width) {
    std::vector<float> r(static_cast<std::size_t>(width));
    for (std::int64_t i = 0; i < width; ++i) r[static_cast<std::size_t>(i)] = key * 1000.0F + i;
    return r;
  }
  fs::path dir_;
};

TEST_F(FeatureCacheTest, StoresAndFindsRowsInMemory) {
  FeatureCache cache(5, 1 << 20, dir_ / "spill");
  EXPECT_FALSE(cache.contains(7));
  std::vector<float> out(5, -1.0F);
  EXPECT_FALSE(cache.find(7, out.data()));
  cache.put(7, row(7, 5).data());
  cache.put(3, row(3, 5).data());
  ASSERT_TRUE(cache.find(7, out.data()));
  EXPECT_EQ(out, row(7, 5));
  ASSERT_TRUE(cache.find(3, out.data()));
  EXPECT_EQ(out, row(3, 5));
  // A key stored twice keeps its first row.
  cache.put(7, row(99, 5).data());
  ASSERT_TRUE(cache.find(7, out.data()));
  EXPECT_EQ(out, row(7, 5));
  const FeatureCacheStats s = cache.stats();
  EXPECT_EQ(s.rows, 2);
  EXPECT_EQ(s.rows_on_disk, 0);
  EXPECT_EQ(s.hits, 3);
  EXPECT_EQ(s.misses, 1);
  EXPECT_EQ(cache.keys(), (std::vector<std::int64_t>{7, 3}));
  EXPECT_FALSE(fs::exists(dir_ / "spill"));  // never needed
}

TEST_F(FeatureCacheTest, RowsPastTheBudgetSpillToDiskAndReadBack) {
  const std::int64_t width = 1280;
  // Room for 3 rows in memory; 2500 rows cross a chunk boundary on disk too.
  FeatureCache cache(width, 3 * width * 4 + 7, dir_ / "spill");
  for (std::int64_t k = 0; k < 2500; ++k) cache.put(k * 2 + 1, row(k, width).data());
  const FeatureCacheStats s = cache.stats();
  EXPECT_EQ(s.rows, 2500);
  EXPECT_EQ(s.rows_on_disk, 2497);
  EXPECT_LE(s.bytes_in_memory, 3 * width * 4 + 7);  // the budget holds
  ASSERT_TRUE(fs::exists(dir_ / "spill"));
  EXPECT_EQ(static_cast<std::int64_t>(fs::file_size(dir_ / "spill")), 2497 * width * 4);
  std::vector<float> out(static_cast<std::size_t>(width));
  for (std::int64_t k : {0, 2, 3, 1024, 2499}) {
    ASSERT_TRUE(cache.find(k * 2 + 1, out.data())) << k;
    EXPECT_EQ(out, row(k, width)) << k;
  }
}

TEST_F(FeatureCacheTest, ZeroBudgetSendsEverythingToDiskAndTheFileGoes) {
  {
    FeatureCache cache(4, 0, dir_ / "spill");
    cache.put(1, row(1, 4).data());
    EXPECT_EQ(cache.stats().rows_on_disk, 1);
    EXPECT_EQ(cache.stats().bytes_in_memory, 0);
    std::vector<float> out(4);
    ASSERT_TRUE(cache.find(1, out.data()));
    EXPECT_EQ(out, row(1, 4));
  }
  EXPECT_FALSE(fs::exists(dir_ / "spill"));  // removed with the cache
}

TEST_F(FeatureCacheTest, AnUnwritableSpillFolderIsNamed) {
  FeatureCache cache(4, 0, dir_ / "missing-folder" / "spill");
  try {
    cache.put(1, row(1, 4).data());
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("missing-folder/spill"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("--cache-dir"), std::string::npos) << e.what();
  }
}

TEST_F(FeatureCacheTest, BadSizesAreRefused) {
  EXPECT_THROW(FeatureCache(0, 100, dir_ / "s"), std::invalid_argument);
  EXPECT_THROW(FeatureCache(4, -1, dir_ / "s"), std::invalid_argument);
}

}  // namespace
}  // namespace xfer::trainer::train
