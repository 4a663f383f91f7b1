// RunService.PutReport / GetReport against a real coordinator on 127.0.0.1,
// through raw stubs: round trip, replacement, every validation error, the
// roles, persistence across a restart and a damaged report file.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <functional>
#include <limits>

#include "tests/coordinator/service_test_util.h"

namespace xfer::coordinator::server::testing {
namespace {

using ::testing::HasSubstr;

// A consistent report of `n` classes: class t has t + 1 samples, of which
// all but one (for t > 0) are predicted right; the miss goes to class 0.
v1::RunReport make_report(const std::string& run, int n = 3) {
  v1::RunReport r;
  r.set_run(run);
  r.set_split("test");
  r.set_checkpoint_id("ckpt-00000001");
  r.set_loss(0.75);
  r.set_top3(1.0);
  r.set_num_classes(n);
  std::int64_t samples = 0, right = 0;
  for (int t = 0; t < n; ++t) {
    for (int p = 0; p < n; ++p) {
      std::int64_t count = 0;
      if (p == t) count = t == 0 ? 1 : t;
      if (p == 0 && t > 0) count = 1;
      r.add_confusion(count);
    }
    auto* c = r.add_classes();
    c->set_index(t);
    c->set_label("class_" + std::to_string(t));
    c->set_precision(0.5);
    c->set_recall(0.5);
    c->set_f1(0.5);
    c->set_support(t + 1);
    samples += t + 1;
    right += t == 0 ? 1 : t;
  }
  r.set_samples(samples);
  r.set_top1(static_cast<double>(right) / static_cast<double>(samples));
  r.set_macro_precision(0.5);
  r.set_macro_recall(0.5);
  r.set_macro_f1(0.5);
  r.set_weighted_f1(0.5);
  return r;
}

// A 3x2x2 prediction sample of class `label` with top classes 0, 1, 2.
v1::PredictionSample make_prediction(std::int64_t index, int label) {
  v1::PredictionSample s;
  s.set_index(index);
  s.set_label(label);
  s.set_channels(3);
  s.set_height(2);
  s.set_width(2);
  s.set_image(std::string("\x00\x10\x20\x30\x40\x50\x60\x70\x80\x90\xa0\xff", 12));
  for (int k = 0; k < 3; ++k) {
    s.add_top_classes(k);
    s.add_top_probabilities(0.5f / static_cast<float>(k + 1));
  }
  return s;
}

class ReportServiceTest : public CoordinatorFixture {
 protected:
  grpc::Status put(const v1::RunReport& report, v1::PutReportResponse* response = nullptr,
                   const std::string& token = "") {
    v1::PutReportResponse ignored;
    return stubs_->runs->PutReport(context(token).get(), report,
                                   response != nullptr ? response : &ignored);
  }
  grpc::Status get(const std::string& run, v1::RunReport* report, const std::string& token = "") {
    v1::GetReportRequest request;
    request.set_run(run);
    return stubs_->runs->GetReport(context(token).get(), request, report);
  }
  fs::path report_file(const std::string& run) const {
    return root_ / "state" / "reports" / (run + ".report.pb");
  }
  std::vector<std::string> status_errors() {
    v1::StatusResponse status;
    EXPECT_TRUE(stubs_->runs->GetStatus(context().get(), {}, &status).ok());
    return {status.errors().begin(), status.errors().end()};
  }
};

TEST_F(ReportServiceTest, PutThenGetRoundTripsAndASecondPutReplaces) {
  start();
  start_run("r1", 2);
  const std::int64_t before = std::chrono::duration_cast<std::chrono::milliseconds>(
                                  std::chrono::system_clock::now().time_since_epoch())
                                  .count();
  v1::RunReport sent = make_report("r1", 100);  // CIFAR-100's shape
  sent.set_created_unix_ms(42);                 // the server's clock wins
  v1::PutReportResponse response;
  ASSERT_TRUE(put(sent, &response).ok());
  EXPECT_FALSE(response.replaced());

  v1::RunReport stored;
  ASSERT_TRUE(get("r1", &stored).ok());
  EXPECT_GE(stored.created_unix_ms(), before);
  stored.clear_created_unix_ms();
  sent.clear_created_unix_ms();
  EXPECT_EQ(stored.SerializeAsString(), sent.SerializeAsString()) << stored.DebugString();

  v1::RunReport second = make_report("r1");
  second.set_loss(0.5);
  ASSERT_TRUE(put(second, &response).ok());
  EXPECT_TRUE(response.replaced());
  ASSERT_TRUE(get("r1", &stored).ok());
  EXPECT_DOUBLE_EQ(stored.loss(), 0.5);
  EXPECT_EQ(stored.num_classes(), 3);
}

TEST_F(ReportServiceTest, UnknownRunsAndMissingReportsAreNotFound) {
  start();
  start_run("r1", 1);
  v1::RunReport report;
  grpc::Status status = get("r1", &report);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(status.error_message(), HasSubstr("run 'r1' has no report yet"));
  status = get("ghost", &report);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(status.error_message(), HasSubstr("no run 'ghost'"));
  status = put(make_report("ghost"));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(status.error_message(), HasSubstr("no run 'ghost'"));
  EXPECT_FALSE(fs::exists(report_file("ghost")));
}

TEST_F(ReportServiceTest, EveryInconsistencyIsInvalidArgumentNamingTheField) {
  start();
  start_run("r1", 1);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  struct Case {
    const char* expect;
    std::function<void(v1::RunReport&)> spoil;
  };
  const std::vector<Case> cases = {
      {"num_classes 0 is out of range (expected 1..10000)",
       [](v1::RunReport& r) { r.set_num_classes(0); }},
      {"num_classes -3", [](v1::RunReport& r) { r.set_num_classes(-3); }},
      {"num_classes 10001", [](v1::RunReport& r) { r.set_num_classes(10001); }},
      {"classes has 2 entries (expected num_classes = 3)",
       [](v1::RunReport& r) { r.mutable_classes()->RemoveLast(); }},
      {"confusion has 8 counts (expected num_classes^2 = 9)",
       [](v1::RunReport& r) { r.mutable_confusion()->RemoveLast(); }},
      {"classes[1].index is 7 (expected 1",
       [](v1::RunReport& r) { r.mutable_classes(1)->set_index(7); }},
      {"confusion[0][1] = -1 is negative", [](v1::RunReport& r) { r.set_confusion(1, -1); }},
      {"overflows",
       [](v1::RunReport& r) {
         r.set_confusion(0, std::numeric_limits<std::int64_t>::max());
         r.set_confusion(1, 1);
       }},
      {"classes[0].support is 5 (expected 1, the sum of confusion row 0)",
       [](v1::RunReport& r) { r.mutable_classes(0)->set_support(5); }},
      {"samples is 9 (expected 6, the sum of the confusion matrix)",
       [](v1::RunReport& r) { r.set_samples(9); }},
      {"samples -1 is negative", [](v1::RunReport& r) { r.set_samples(-1); }},
      {"loss nan is not finite", [nan](v1::RunReport& r) { r.set_loss(nan); }},
      {"loss inf is not finite", [inf](v1::RunReport& r) { r.set_loss(inf); }},
      {"top1 1.5 is outside [0, 1]", [](v1::RunReport& r) { r.set_top1(1.5); }},
      {"top1 nan is outside [0, 1]", [nan](v1::RunReport& r) { r.set_top1(nan); }},
      {"top3 -0.25 is outside [0, 1]", [](v1::RunReport& r) { r.set_top3(-0.25); }},
      {"weighted_f1 2 is outside [0, 1]", [](v1::RunReport& r) { r.set_weighted_f1(2); }},
      {"classes[2].recall inf is outside [0, 1]",
       [inf](v1::RunReport& r) { r.mutable_classes(2)->set_recall(inf); }},
  };
  for (const Case& c : cases) {
    v1::RunReport report = make_report("r1");
    c.spoil(report);
    const grpc::Status status = put(report);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.expect;
    EXPECT_THAT(status.error_message(), HasSubstr(c.expect));
    EXPECT_THAT(status.error_message(), HasSubstr("PutReport"));
  }
  // Nothing refused was stored.
  v1::RunReport stored;
  EXPECT_EQ(get("r1", &stored).error_code(), grpc::StatusCode::NOT_FOUND);
  // The unspoiled report passes, as does an empty split of zero samples.
  EXPECT_TRUE(put(make_report("r1")).ok());
  v1::RunReport empty = make_report("r1", 1);
  empty.set_confusion(0, 0);
  empty.mutable_classes(0)->set_support(0);
  empty.set_samples(0);
  EXPECT_TRUE(put(empty).ok());
}

TEST_F(ReportServiceTest, PredictionSamplesRoundTripAndEveryBadOneIsInvalidArgument) {
  start();
  start_run("r1", 1);
  v1::RunReport sent = make_report("r1");
  for (int i = 0; i < 64; ++i) *sent.add_predictions() = make_prediction(i, i % 3);
  ASSERT_TRUE(put(sent).ok());
  v1::RunReport stored;
  ASSERT_TRUE(get("r1", &stored).ok());
  ASSERT_EQ(stored.predictions_size(), 64);
  EXPECT_EQ(stored.predictions(63).SerializeAsString(), make_prediction(63, 0).SerializeAsString());

  const float nan = std::numeric_limits<float>::quiet_NaN();
  struct Case {
    const char* expect;
    std::function<void(v1::PredictionSample&)> spoil;
  };
  const std::vector<Case> cases = {
      {"predictions[1].index -4 is negative", [](auto& p) { p.set_index(-4); }},
      {"predictions[1].label 3 is out of range (expected 0..2)", [](auto& p) { p.set_label(3); }},
      {"predictions[1].label -1 is out of range", [](auto& p) { p.set_label(-1); }},
      {"predictions[1].channels 0 is out of range (expected 1..1024)",
       [](auto& p) { p.set_channels(0); }},
      {"predictions[1].width 1025 is out of range", [](auto& p) { p.set_width(1025); }},
      {"predictions[1].image has 12 bytes (expected channels x height x width = 3x2x3 = 18)",
       [](auto& p) { p.set_width(3); }},
      {"predictions[1].image has 11 bytes (expected channels x height x width = 3x2x2 = 12)",
       [](auto& p) { p.mutable_image()->pop_back(); }},
      {"predictions[1].top_classes has 6 entries (expected at most 5)",
       [](auto& p) {
         for (int k = 0; k < 3; ++k) {
           p.add_top_classes(0);
           p.add_top_probabilities(0.0f);
         }
       }},
      {"predictions[1].top_probabilities has 2 entries (expected one per top class: 3)",
       [](auto& p) { p.mutable_top_probabilities()->RemoveLast(); }},
      {"predictions[1].top_classes[2] 3 is out of range (expected 0..2)",
       [](auto& p) { p.set_top_classes(2, 3); }},
      {"predictions[1].top_probabilities[0] 1.5 is outside [0, 1]",
       [](auto& p) { p.set_top_probabilities(0, 1.5f); }},
      {"predictions[1].top_probabilities[1] nan is outside [0, 1]",
       [nan](auto& p) { p.set_top_probabilities(1, nan); }},
  };
  for (const Case& c : cases) {
    v1::RunReport report = make_report("r1");
    *report.add_predictions() = make_prediction(0, 0);
    c.spoil(*report.add_predictions() = make_prediction(1, 1));
    const grpc::Status status = put(report);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.expect;
    EXPECT_THAT(status.error_message(), HasSubstr(c.expect));
  }
  v1::RunReport too_many = make_report("r1");
  for (int i = 0; i < 65; ++i) *too_many.add_predictions() = make_prediction(i, 0);
  const grpc::Status status = put(too_many);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(),
              HasSubstr("predictions has 65 samples (expected at most 64)"));
  // The refused puts left the first report in place.
  ASSERT_TRUE(get("r1", &stored).ok());
  EXPECT_EQ(stored.predictions_size(), 64);
}

TEST_F(ReportServiceTest, AdminTokenWritesReadTokenOnlyReads) {
  enable_auth();
  start();
  start_run("r1", 1, kAdminToken);
  grpc::Status status = put(make_report("r1"), nullptr, kReadToken);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(status.error_message(), HasSubstr("PutReport"));
  EXPECT_EQ(put(make_report("r1")).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_FALSE(fs::exists(report_file("r1")));
  ASSERT_TRUE(put(make_report("r1"), nullptr, kAdminToken).ok());

  v1::RunReport report;
  EXPECT_TRUE(get("r1", &report, kReadToken).ok());
  EXPECT_TRUE(get("r1", &report, kAdminToken).ok());
  EXPECT_EQ(get("r1", &report).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(get("r1", &report, "wrong-token-0123456789").error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(ReportServiceTest, ReportsSurviveARestartOnTheSameStateDir) {
  start();
  start_run("r1", 1);
  start_run("r2", 1);
  ASSERT_TRUE(put(make_report("r1", 10)).ok());
  ASSERT_TRUE(put(make_report("r2", 4)).ok());
  v1::RunReport before;
  ASSERT_TRUE(get("r1", &before).ok());
  // An interrupted write leaves a temporary file; the restart removes it.
  std::ofstream(report_file("r2").string() + ".tmp") << "half a report";

  restart();
  v1::RunReport after;
  ASSERT_TRUE(get("r1", &after).ok());
  EXPECT_EQ(after.SerializeAsString(), before.SerializeAsString());
  ASSERT_TRUE(get("r2", &after).ok());
  EXPECT_EQ(after.num_classes(), 4);
  EXPECT_FALSE(fs::exists(report_file("r2").string() + ".tmp"));
  EXPECT_TRUE(status_errors().empty());
  v1::PutReportResponse response;
  ASSERT_TRUE(put(make_report("r1"), &response).ok());
  EXPECT_TRUE(response.replaced());
}

TEST_F(ReportServiceTest, ADamagedReportFileIsDataLossNamingItAndShowsInStatus) {
  start();
  start_run("r1", 1);
  start_run("r2", 1);
  ASSERT_TRUE(put(make_report("r1")).ok());
  ASSERT_TRUE(put(make_report("r2")).ok());
  stubs_.reset();
  coordinator_.reset();
  // Truncated mid-message: does not parse.
  const std::string bytes = make_report("r1").SerializeAsString();
  std::ofstream(report_file("r1"), std::ios::binary | std::ios::trunc)
      << bytes.substr(0, bytes.size() / 2);

  start();  // starts anyway: the other reports stay readable
  v1::RunReport report;
  grpc::Status status = get("r1", &report);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DATA_LOSS);
  EXPECT_THAT(status.error_message(), HasSubstr(report_file("r1").string()));
  EXPECT_TRUE(get("r2", &report).ok());
  const auto errors = status_errors();
  ASSERT_FALSE(errors.empty());
  EXPECT_THAT(errors.front(), HasSubstr("r1.report.pb"));

  // Damaged while running: noticed too.
  std::ofstream(report_file("r2"), std::ios::binary | std::ios::trunc) << "garbage!";
  status = get("r2", &report);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DATA_LOSS);
  EXPECT_THAT(status.error_message(), HasSubstr("r2.report.pb"));

  // A new report replaces the damaged one.
  v1::PutReportResponse response;
  ASSERT_TRUE(put(make_report("r1"), &response).ok());
  EXPECT_TRUE(response.replaced());
  EXPECT_TRUE(get("r1", &report).ok());
}

}  // namespace
}  // namespace xfer::coordinator::server::testing
