// predict's torch-free parts: image decoding, labels files, top-k and the
// two output formats.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stb_image_write.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "trainer/predict/image.h"
#include "trainer/predict/report.h"

namespace xfer::trainer::predict {
namespace {

using ::testing::HasSubstr;

class TempDir {
 public:
  TempDir() {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "xfer_predict_test_XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

void write_text(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

template <typename Fn>
std::string error_of(Fn fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "no error";
}

TEST(ModelsPredictReport, TopKSortsByProbabilityThenIndex) {
  const std::vector<double> p = {0.1, 0.4, 0.1, 0.3, 0.1};
  const auto top = top_k(p, 4, {});
  ASSERT_EQ(top.size(), 4u);
  EXPECT_EQ(top[0].index, 1);
  EXPECT_EQ(top[0].label, "class_1");
  EXPECT_EQ(top[1].index, 3);
  EXPECT_EQ(top[2].index, 0);  // ties: lower index first
  EXPECT_EQ(top[3].index, 2);
  EXPECT_EQ(top_k(p, 50, {}).size(), 5u);  // capped at the class count
  EXPECT_EQ(top_k(p, 1, {"a", "b", "c", "d", "e"})[0].label, "b");
  EXPECT_THROW(top_k(p, 0, {}), std::invalid_argument);
  EXPECT_THROW(top_k(p, 2, {"a"}), std::invalid_argument);
}

TEST(ModelsPredictReport, JsonIsExactlyTheDocumentedShape) {
  const auto top = top_k({0.25, 0.75}, 2, {"cat", "dog \"big\""});
  EXPECT_EQ(format_json(top),
            "{\"predictions\":[{\"index\":1,\"label\":\"dog \\\"big\\\"\",\"probability\":0.75},"
            "{\"index\":0,\"label\":\"cat\",\"probability\":0.25}]}\n");
}

TEST(ModelsPredictReport, TextSaysUncertainBelowOneHalf) {
  const std::string sure = format_text("bear.png", top_k({0.2, 0.8}, 2, {"cat", "bear"}));
  EXPECT_THAT(sure, HasSubstr("bear.png: bear (probability 0.8000); the top 2:"));
  EXPECT_THAT(sure, ::testing::Not(HasSubstr("uncertain")));
  const std::string unsure =
      format_text("x.png", top_k({0.3, 0.45, 0.25}, 3, {"cat", "bear", "fox"}));
  EXPECT_THAT(unsure, HasSubstr("x.png: uncertain: the top probability 0.4500 is below 0.5"));
  EXPECT_THAT(unsure, HasSubstr("1. bear"));
  EXPECT_THAT(unsure, HasSubstr("3. fox"));
  // Exactly 0.5 is not uncertain.
  EXPECT_THAT(format_text("y.png", top_k({0.5, 0.5}, 2, {})), HasSubstr("y.png: class_0"));
}

TEST(ModelsPredictReport, LabelsFiles) {
  TempDir dir;
  write_text(dir.file("ok.txt"), "apple\r\nbear\ncastle\n\n\r\n");
  EXPECT_THAT(read_labels_file(dir.file("ok.txt")),
              ::testing::ElementsAre("apple", "bear", "castle"));
  write_text(dir.file("gap.txt"), "apple\n\nbear\n");
  EXPECT_THAT(error_of([&] { read_labels_file(dir.file("gap.txt")); }),
              HasSubstr("labels file " + dir.file("gap.txt") + " line 2 is empty"));
  write_text(dir.file("empty.txt"), "\n\n");
  EXPECT_THAT(error_of([&] { read_labels_file(dir.file("empty.txt")); }), HasSubstr("is empty"));
  EXPECT_THAT(error_of([&] { read_labels_file(dir.file("absent.txt")); }),
              HasSubstr("cannot open labels file"));
}

TEST(ModelsPredictImage, DecodesPngAndJpegAndRejectsOthers) {
  TempDir dir;
  // 3x2 RGBA: alpha must be dropped, channels kept in order.
  const std::vector<unsigned char> rgba = {10, 20, 30, 255, 40, 50, 60, 0, 70, 80, 90, 9,
                                           1,  2,  3,  4,   5,  6,  7,  8, 9,  10, 11, 12};
  ASSERT_NE(stbi_write_png(dir.file("a.png").c_str(), 3, 2, 4, rgba.data(), 3 * 4), 0);
  const RgbImage png = decode_image_file(dir.file("a.png"));
  EXPECT_EQ(png.width, 3);
  EXPECT_EQ(png.height, 2);
  EXPECT_EQ(png.pixels, (std::vector<uint8_t>{10, 20, 30, 40, 50, 60, 70, 80, 90, 1, 2, 3, 5, 6, 7,
                                              9, 10, 11}));

  std::vector<unsigned char> grey(16 * 8, 128);
  ASSERT_NE(stbi_write_jpg(dir.file("g.jpg").c_str(), 16, 8, 1, grey.data(), 95), 0);
  const RgbImage jpg = decode_image_file(dir.file("g.jpg"));
  EXPECT_EQ(jpg.width, 16);
  EXPECT_EQ(jpg.height, 8);
  ASSERT_EQ(jpg.pixels.size(), 16u * 8 * 3);
  EXPECT_NEAR(jpg.pixels[0], 128, 2);  // grey expanded to RGB

  write_text(dir.file("text.png"), "this is not an image");
  EXPECT_THAT(error_of([&] { decode_image_file(dir.file("text.png")); }),
              HasSubstr("cannot decode image " + dir.file("text.png")));
  // A PNG cut in half.
  const auto size = std::filesystem::file_size(dir.file("a.png"));
  std::filesystem::copy_file(dir.file("a.png"), dir.file("cut.png"));
  std::filesystem::resize_file(dir.file("cut.png"), size / 2);
  EXPECT_THAT(error_of([&] { decode_image_file(dir.file("cut.png")); }),
              HasSubstr("cannot decode image"));
  write_text(dir.file("empty.png"), "");
  EXPECT_THAT(error_of([&] { decode_image_file(dir.file("empty.png")); }), HasSubstr("is empty"));
  EXPECT_THAT(error_of([&] { decode_image_file(dir.file("absent.png")); }),
              HasSubstr("cannot open image"));
}

}  // namespace
}  // namespace xfer::trainer::predict
