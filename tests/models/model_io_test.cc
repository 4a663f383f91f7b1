// Model files (trainer/models/model_file.h) both ways with Python, their
// errors, and the ImageNet preprocessing.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>

#include "tests/models/test_util.h"
#include "trainer/models/model_file.h"
#include "trainer/models/preprocess.h"
#include "trainer/models/transfer_model.h"

namespace xfer::trainer::models {
namespace {

using ::testing::HasSubstr;
using testing::TempDir;

ModelMetadata small_metadata() {
  ModelMetadata metadata;
  metadata.arch = "efficientnet_b0";
  metadata.num_classes = 3;
  metadata.image_size = 32;
  metadata.labels = {"apple", "bear", "castle"};
  return metadata;
}

StateDict small_state() {
  StateDict state;
  state.insert("features.0.0.weight", torch::arange(6, torch::kFloat32).view({2, 3}));
  state.insert("classifier.1.bias", torch::tensor({1.5F, -2.0F, 0.25F}));
  return state;
}

// Runs a Python snippet with Debian's torch; returns its exit code.
int python(const std::string& code) {
  const std::string command = "/usr/bin/python3 -c '" + code + "'";
  return std::system(command.c_str());
}

std::string read_error(const std::string& path) {
  try {
    read_weights_file(path);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "no error";
}

void write_bytes(const std::string& path, const std::vector<char>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

TEST(ModelsModelFile, RoundTripsWithMetadataAndExtras) {
  TempDir dir;
  const std::string path = dir.file("model.pt");
  write_model_file(path, small_metadata(), small_state(), {{"epoch", torch::IValue(4)}});
  const WeightsFile file = read_weights_file(path);
  ASSERT_TRUE(file.metadata.has_value());
  EXPECT_EQ(file.metadata->arch, "efficientnet_b0");
  EXPECT_EQ(file.metadata->num_classes, 3);
  EXPECT_EQ(file.metadata->image_size, 32);
  EXPECT_THAT(file.metadata->labels, ::testing::ElementsAre("apple", "bear", "castle"));
  ASSERT_EQ(file.state_dict.size(), 2u);
  EXPECT_TRUE(
      torch::equal(file.state_dict["classifier.1.bias"], small_state()["classifier.1.bias"]));
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));

  // A plain state dict has no metadata.
  write_state_dict_file(small_state(), dir.file("plain.pt"));
  EXPECT_FALSE(read_weights_file(dir.file("plain.pt")).metadata.has_value());

  EXPECT_THROW(serialize_model_file(small_metadata(), small_state(), {{"arch", torch::IValue(1)}}),
               std::invalid_argument);
}

TEST(ModelsModelFile, PythonReadsOursAndWeReadPythons) {
  TempDir dir;
  const std::string ours = dir.file("ours.pt");
  write_model_file(ours, small_metadata(), small_state());
  EXPECT_EQ(
      python("import torch, sys\n"
             "m = torch.load(\"" +
             ours +
             "\")\n"
             "ok = (m[\"xfer_model_format\"] == 1 and m[\"arch\"] == \"efficientnet_b0\" and\n"
             "      m[\"num_classes\"] == 3 and m[\"labels\"] == [\"apple\", \"bear\", \"castle\"] "
             "and\n"
             "      m[\"state_dict\"][\"classifier.1.bias\"].tolist() == [1.5, -2.0, 0.25])\n"
             "sys.exit(0 if ok else 1)"),
      0);

  // Python's torch.save of the same record, its state dict an OrderedDict
  // (what model.state_dict() returns) and an extra key.
  const std::string theirs = dir.file("theirs.pt");
  ASSERT_EQ(
      python("import torch, collections\n"
             "sd = collections.OrderedDict(a=torch.ones(2), b=torch.zeros(1, 3))\n"
             "sd._metadata = collections.OrderedDict(a=dict(version=1))\n"
             "torch.save(dict(xfer_model_format=1, arch=\"torchscript\", num_classes=2,\n"
             "                image_size=64, labels=[], base_file=\"base.pt\", state_dict=sd,\n"
             "                optimizer=dict(lr=0.001)), \"" +
             theirs + "\")"),
      0);
  const WeightsFile file = read_weights_file(theirs);
  ASSERT_TRUE(file.metadata.has_value());
  EXPECT_EQ(file.metadata->arch, "torchscript");
  EXPECT_EQ(file.metadata->base_file, "base.pt");
  EXPECT_EQ(file.metadata->image_size, 64);
  EXPECT_TRUE(file.metadata->labels.empty());
  ASSERT_EQ(file.state_dict.size(), 2u);
  EXPECT_EQ(file.state_dict.keys()[0], "a");
  EXPECT_EQ(shape_string(file.state_dict["b"]), "[1, 3]");
}

TEST(ModelsModelFile, BadRecordsNameTheField) {
  TempDir dir;
  const auto write_record = [&](const std::string& name, const std::string& fields) {
    const std::string path = dir.file(name);
    EXPECT_EQ(python("import torch\n"
                     "r = dict(xfer_model_format=1, arch=\"efficientnet_b0\", num_classes=2,\n"
                     "         image_size=32, labels=[], base_file=\"\", state_dict=dict())\n"
                     "r.update(" +
                     fields +
                     ")\n"
                     "r = {k: v for k, v in r.items() if v is not None}\n"
                     "torch.save(r, \"" +
                     path + "\")"),
              0);
    return read_error(path);
  };
  EXPECT_THAT(write_record("v2.pt", "xfer_model_format=2"),
              HasSubstr("model file of format 2, this build reads format 1"));
  EXPECT_THAT(write_record("noarch.pt", "arch=None"), HasSubstr("without the field 'arch'"));
  EXPECT_THAT(write_record("strclasses.pt", "num_classes=\"ten\""),
              HasSubstr("field 'num_classes' is a String, expected an int"));
  EXPECT_THAT(write_record("zero.pt", "num_classes=0"),
              HasSubstr("num_classes is 0, expected >= 1"));
  EXPECT_THAT(write_record("labels.pt", "labels=[\"a\", \"b\", \"c\"]"),
              HasSubstr("3 labels for 2 classes"));
  EXPECT_THAT(write_record("labeltype.pt", "labels=[\"a\", 7]"),
              HasSubstr("field 'labels' item 1 is a Int, expected a string"));
  EXPECT_THAT(write_record("arch.pt", "arch=\"vgg\""), HasSubstr("arch 'vgg' is unknown"));
  EXPECT_THAT(write_record("sd.pt", "state_dict=dict(w=3)"),
              HasSubstr("(field 'state_dict'): entry w is a Int, expected a tensor"));
}

TEST(ModelsModelFile, TruncatedOrRandomFilesGiveClearErrors) {
  TempDir dir;
  const std::vector<char> bytes = serialize_model_file(small_metadata(), small_state());
  for (const size_t size : {bytes.size() / 2, bytes.size() - 30, size_t{10}}) {
    const std::string path = dir.file("cut" + std::to_string(size) + ".pt");
    write_bytes(path, std::vector<char>(bytes.begin(), bytes.begin() + static_cast<long>(size)));
    EXPECT_THAT(read_error(path), HasSubstr("cannot read " + path + " as a torch.save file"))
        << size;
  }
  std::mt19937 rng(11);
  for (int trial = 0; trial < 5; ++trial) {
    std::vector<char> noise(static_cast<size_t>(100 + trial * 5000));
    for (auto& c : noise) c = static_cast<char>(rng() & 0xff);
    const std::string path = dir.file("noise" + std::to_string(trial) + ".pt");
    write_bytes(path, noise);
    EXPECT_THAT(read_error(path), HasSubstr("cannot read " + path)) << trial;
  }
  // A whole zip whose pickle is damaged (the protocol-2 header, then bytes
  // inside it), and one whose tensor data is.
  const std::string text(bytes.begin(), bytes.end());
  const size_t pickle = text.find("\x80\x02");
  ASSERT_NE(pickle, std::string::npos);
  for (const size_t at : {pickle, pickle + 20, bytes.size() / 2}) {
    std::vector<char> damaged = bytes;
    for (size_t i = at; i < at + 8; ++i) damaged[i] = static_cast<char>(~damaged[i]);
    const std::string path = dir.file("damaged" + std::to_string(at) + ".pt");
    write_bytes(path, damaged);
    EXPECT_THAT(read_error(path), HasSubstr("cannot read " + path)) << at;
  }
  EXPECT_THAT(read_error(dir.file("absent.pt")), HasSubstr("cannot open " + dir.file("absent.pt")));
}

TEST(ModelsModelFile, TransferModelSavesAndReloads) {
  TempDir dir;
  TransferModelOptions options;
  options.num_classes = 4;
  TransferModel model(options);
  ModelMetadata metadata;
  metadata.num_classes = 4;
  metadata.image_size = 32;
  write_model_file(dir.file("model.pt"), metadata, model_state_dict(*model));

  TransferModel other(options);
  const LoadResult result = other->load_weights(dir.file("model.pt"));
  EXPECT_TRUE(result.head_loaded);
  for (const auto& item : model_state_dict(*model)) {
    EXPECT_TRUE(torch::equal(item.value(), model_state_dict(*other)[item.key()])) << item.key();
  }

  metadata.arch = "torchscript";
  write_model_file(dir.file("script.pt"), metadata, model_state_dict(*model));
  try {
    other->load_weights(dir.file("script.pt"));
    ADD_FAILURE() << "a torchscript model file loaded into efficientnet_b0";
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), HasSubstr("is a model file for arch torchscript, the model is "
                                    "efficientnet_b0"));
  }
}

TEST(ModelsPreprocess, ScalesResizesAndNormalises) {
  const auto image = torch::full({1, 3, 4, 6}, 51, torch::kByte);  // 51/255 = 0.2
  const auto out = preprocess_imagenet(image, 8);
  EXPECT_EQ(shape_string(out), "[1, 3, 8, 8]");
  for (int c = 0; c < 3; ++c) {
    const float expected =
        (0.2F - kImageNetMean[static_cast<size_t>(c)]) / kImageNetStd[static_cast<size_t>(c)];
    EXPECT_NEAR(out[0][c].min().item<float>(), expected, 1e-6);
    EXPECT_NEAR(out[0][c].max().item<float>(), expected, 1e-6);
  }
  // Float input in [0, 1] is not divided again.
  EXPECT_TRUE(torch::allclose(preprocess_imagenet(image.to(torch::kFloat32) / 255, 8), out));
  EXPECT_THROW(preprocess_imagenet(torch::zeros({3, 4, 4}), 8), std::invalid_argument);
  EXPECT_THROW(preprocess_imagenet(torch::zeros({1, 4, 4, 4}), 8), std::invalid_argument);
  EXPECT_THROW(preprocess_imagenet(torch::zeros({1, 3, 4, 4}, torch::kInt), 8),
               std::invalid_argument);
}

}  // namespace
}  // namespace xfer::trainer::models
