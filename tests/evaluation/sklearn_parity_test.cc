// summarize()'s macro and weighted averages against scikit-learn itself
// (issue #21): seeded random (y_true, y_pred) for several shapes of data,
// our report from ClassificationCounts, scikit-learn's from the same labels
// through /usr/bin/python3 (python3-sklearn, deploy/install-deps.sh) and
// sklearn_reference.py. scikit-learn is called without `labels`, as people
// call classification_report, so it averages over unique_labels(y_true,
// y_pred): the classes that occur in the truth or in the predictions.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "trainer/evaluation/classification_counts.h"
#include "trainer/evaluation/evaluation_report.h"

namespace xfer::trainer::evaluation {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

// Per-class sums are rounded differently from numpy's (2tp / (2tp+fp+fn)
// against 2pr / (p+r), pairwise against sequential summation): ~1e-16 each.
constexpr double kTolerance = 1e-12;

// A fresh directory under the system temp dir, removed at the end.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "xfer_sklearn_test_XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) {
      throw std::runtime_error("mkdtemp " + pattern + " failed");
    }
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// One shape of data. y_true is drawn uniformly from `true_classes`; y_pred
// is y_true with probability `accuracy` when y_true is in `predicted_classes`,
// else drawn uniformly from `predicted_classes`. A class only in
// `predicted_classes` is therefore never true, one only in `true_classes`
// never predicted, and one in neither never occurs.
struct Shape {
  std::string name;
  int num_classes;
  std::vector<int> true_classes;
  std::vector<int> predicted_classes;
  int samples;
  double accuracy;
  std::uint32_t seed;
};

struct Case {
  Shape shape;
  std::vector<int> y_true, y_pred;
};

std::vector<int> range(int begin, int end) {
  std::vector<int> out;
  for (int c = begin; c < end; ++c) out.push_back(c);
  return out;
}

Case draw(const Shape& shape) {
  Case out{shape, {}, {}};
  std::mt19937 rng(shape.seed);
  std::uniform_int_distribution<std::size_t> pick_true(0, shape.true_classes.size() - 1);
  std::uniform_int_distribution<std::size_t> pick_predicted(0, shape.predicted_classes.size() - 1);
  std::bernoulli_distribution right(shape.accuracy);
  const std::set<int> predictable(shape.predicted_classes.begin(), shape.predicted_classes.end());
  for (int i = 0; i < shape.samples; ++i) {
    const int t = shape.true_classes[pick_true(rng)];
    const bool correct = right(rng) && predictable.count(t) > 0;
    out.y_true.push_back(t);
    out.y_pred.push_back(correct ? t : shape.predicted_classes[pick_predicted(rng)]);
  }
  return out;
}

std::vector<Case> draw_cases() {
  // Ten scattered classes of a hundred, as a 10-class dataset on a
  // CIFAR-100 model (the case).
  std::vector<int> ten = range(0, 100);
  std::shuffle(ten.begin(), ten.end(), std::mt19937(21));
  ten.resize(10);
  std::sort(ten.begin(), ten.end());
  std::vector<int> with_extras = range(0, 8);
  for (int c : {12, 15, 19}) with_extras.push_back(c);
  std::vector<int> sixty = range(0, 60), seventy = range(0, 50);
  for (int c : range(70, 90)) seventy.push_back(c);
  const std::vector<Shape> shapes = {
      {"ten_of_a_hundred", 100, ten, ten, 2000, 0.6, 1},
      {"only_predicted_classes", 20, range(0, 8), with_extras, 500, 0.5, 2},
      {"only_true_classes", 20, range(0, 10), {0, 1, 2, 3, 4, 11}, 500, 0.5, 3},
      {"true_only_pred_only_and_absent", 100, sixty, seventy, 300, 0.1, 4},
      {"all_classes", 10, range(0, 10), range(0, 10), 1000, 0.7, 5},
      {"single_class_of_five", 5, {3}, {3}, 50, 0.9, 6},
      {"single_class_model", 1, {0}, {0}, 7, 0.9, 7},
  };
  std::vector<Case> cases;
  for (const Shape& s : shapes) cases.push_back(draw(s));
  return cases;
}

ClassificationCounts counts_of(const Case& c) {
  ClassificationCounts counts(c.shape.num_classes);
  for (std::size_t i = 0; i < c.y_true.size(); ++i) {
    counts.add(c.y_true[i], c.y_pred[i], /*in_top3=*/true, /*loss=*/1.0);
  }
  return counts;
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// scikit-learn's results for `cases`, one JSON object each (see
// sklearn_reference.py). Fails the test, returning an empty array, when
// Python or scikit-learn is missing or the script fails.
Json sklearn_results(const std::vector<Case>& cases, const TempDir& dir) {
  Json input = Json::array();
  for (const Case& c : cases) {
    input.push_back({{"name", c.shape.name}, {"y_true", c.y_true}, {"y_pred", c.y_pred}});
  }
  const fs::path in = dir.path() / "cases.json", out = dir.path() / "sklearn.json",
                 err = dir.path() / "stderr.txt";
  std::ofstream(in) << input.dump();
  const std::string command = std::string("/usr/bin/python3 ") + XFER_SKLEARN_REFERENCE_SCRIPT +
                              " '" + in.string() + "' '" + out.string() + "' 2>'" + err.string() +
                              "'";
  const int status = std::system(command.c_str());
  if (status != 0) {
    ADD_FAILURE() << "`" << command << "` exited with status " << status
                  << ", expected 0; it needs /usr/bin/python3 with scikit-learn "
                     "(python3-sklearn, deploy/install-deps.sh). Its stderr:\n"
                  << read_text(err);
    return Json::array();
  }
  Json results = Json::parse(read_text(out));
  if (!results.is_array() || results.size() != cases.size()) {
    ADD_FAILURE() << "sklearn_reference.py wrote " << results.dump().substr(0, 200)
                  << ", expected an array of " << cases.size() << " results";
    return Json::array();
  }
  return results;
}

TEST(SklearnParityTest, MacroAndWeightedAveragesMatchScikitLearn) {
  const std::vector<Case> cases = draw_cases();
  TempDir dir;
  const Json results = sklearn_results(cases, dir);
  ASSERT_EQ(results.size(), cases.size());
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    const Json& sk = results[i];
    SCOPED_TRACE("case " + c.shape.name);
    ASSERT_EQ(sk["name"], c.shape.name);
    const EvaluationReport r = summarize(counts_of(c), {}, "test", "");

    // The classes we leave out are exactly those scikit-learn never saw.
    std::vector<int> absent;
    const std::vector<int> labels = sk["labels"].get<std::vector<int>>();
    for (int k = 0; k < c.shape.num_classes; ++k) {
      if (std::find(labels.begin(), labels.end(), k) == labels.end()) absent.push_back(k);
    }
    EXPECT_EQ(r.absent_classes, absent);

    const std::vector<double> macro = sk["prfs_macro"].get<std::vector<double>>();
    const std::vector<double> report_macro = sk["report_macro"].get<std::vector<double>>();
    const std::vector<double> weighted = sk["prfs_weighted"].get<std::vector<double>>();
    EXPECT_NEAR(r.macro_precision, macro[0], kTolerance);
    EXPECT_NEAR(r.macro_recall, macro[1], kTolerance);
    EXPECT_NEAR(r.macro_f1, macro[2], kTolerance);
    EXPECT_NEAR(r.macro_precision, report_macro[0], kTolerance);
    EXPECT_NEAR(r.macro_recall, report_macro[1], kTolerance);
    EXPECT_NEAR(r.macro_f1, report_macro[2], kTolerance);
    EXPECT_NEAR(r.weighted_f1, weighted[2], kTolerance);
    EXPECT_NEAR(r.weighted_f1, sk["report_weighted_f1"].get<double>(), kTolerance);
  }
}

// The shapes cover what they claim; otherwise a passing parity test would
// prove less than its names say.
TEST(SklearnParityTest, TheDrawnCasesHaveTheIntendedShapes) {
  for (const Case& c : draw_cases()) {
    SCOPED_TRACE("case " + c.shape.name);
    const std::set<int> truth(c.y_true.begin(), c.y_true.end());
    const std::set<int> predicted(c.y_pred.begin(), c.y_pred.end());
    std::set<int> occurring = truth;
    occurring.insert(predicted.begin(), predicted.end());
    const auto only_in = [](const std::set<int>& a, const std::set<int>& b) {
      return std::any_of(a.begin(), a.end(), [&](int k) { return b.count(k) == 0; });
    };
    const std::string& n = c.shape.name;
    if (n == "ten_of_a_hundred") {
      EXPECT_EQ(occurring.size(), 10u);
    }
    if (n == "only_predicted_classes" || n == "true_only_pred_only_and_absent") {
      EXPECT_TRUE(only_in(predicted, truth));
    }
    if (n == "only_true_classes" || n == "true_only_pred_only_and_absent") {
      EXPECT_TRUE(only_in(truth, predicted));
    }
    if (n == "true_only_pred_only_and_absent") {
      EXPECT_LT(occurring.size(), 100u);
    }
    if (n == "all_classes") {
      EXPECT_EQ(occurring.size(), 10u);
    }
    if (n.rfind("single_class", 0) == 0) {
      EXPECT_EQ(occurring.size(), 1u);
    }
  }
}

}  // namespace
}  // namespace xfer::trainer::evaluation
