// Watch streams that are never read (a hung dashboard) against a real
// coordinator: reports from the job are still acknowledged, History is
// complete, a live watcher sees every event, and when the stuck watchers
// finally read they get every event in order: the server neither waited
// for them nor dropped anything. Enough events are published to fill each
// stuck stream's HTTP/2 flow-control window (64 KiB) several times over, so
// the server's writes to them really block (checked once by making Watch
// hold a lock Report needs while it writes: reports then time out near
// epoch 690).
#include <gtest/gtest.h>

#include <thread>

#include "tests/coordinator/service_test_util.h"

namespace xfer::coordinator::server::testing {
namespace {

// 32 characters, the longest phase name: makes each event about 100 bytes.
constexpr char kPhase[] = "phase-name-of-thirty-two-chars-x";
constexpr int kEvents = 2500;  // about 250 KB per stream
constexpr int kStuckWatchers = 4;

v1::MetricsReport epoch_report(int epoch) {
  v1::MetricsReport r;
  r.set_run("job");
  r.set_rank(0);
  r.set_phase(kPhase);
  r.set_epoch(epoch);
  r.set_step(0);
  r.set_split(v1::SPLIT_KIND_TRAIN);
  r.set_loss_sum(2.0);
  r.set_correct_top1(1);
  r.set_correct_top3(2);
  r.set_samples(4);
  r.set_images_per_second(100.0);
  r.set_learning_rate(1e-3);
  r.set_end_of_epoch(true);  // world size 1: every report completes an epoch
  return r;
}

// A Watch call on a connection of its own, not read until drain().
class StuckWatch {
 public:
  explicit StuckWatch(const std::string& address) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // its own TCP connection
    // Without bandwidth-delay probing the client never widens its receive
    // window beyond the initial 64 KiB, so an unread stream really stops the
    // server's writes (with probing, gRPC's client takes megabytes ahead).
    args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
    channel_ = grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
    stub_ = v1::MetricsService::NewStub(channel_);
    context_.set_deadline(std::chrono::system_clock::now() + std::chrono::minutes(5));
    v1::WatchRequest request;
    request.set_run("job");
    reader_ = stub_->Watch(&context_, request);
  }

  // Every event until the stream ends; the final status.
  std::pair<std::vector<v1::MetricsEvent>, grpc::Status> drain() {
    std::vector<v1::MetricsEvent> events;
    v1::MetricsEvent event;
    while (reader_->Read(&event)) events.push_back(event);
    return {events, reader_->Finish()};
  }

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::MetricsService::Stub> stub_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReader<v1::MetricsEvent>> reader_;
};

void expect_every_event_in_order(const std::vector<v1::MetricsEvent>& events) {
  ASSERT_EQ(events.size(), static_cast<std::size_t>(kEvents) + 1);  // + the run's end
  for (int i = 0; i < kEvents; ++i) {
    ASSERT_EQ(events[i].sequence(), i + 1);
    ASSERT_EQ(events[i].epoch().epoch(), i);
  }
  ASSERT_TRUE(events.back().has_run());
  EXPECT_EQ(events.back().run().state(), v1::RUN_STATE_COMPLETED);
}

class ServiceSlowWatcherTest : public CoordinatorFixture {};

TEST_F(ServiceSlowWatcherTest, StuckWatchersNeverBlockReportsAndLoseNothing) {
  start();
  start_run("job", 1);
  std::vector<std::unique_ptr<StuckWatch>> stuck;
  for (int i = 0; i < kStuckWatchers; ++i) {
    stuck.push_back(std::make_unique<StuckWatch>(coordinator_->address()));
  }
  std::vector<v1::MetricsEvent> live_events;
  grpc::Status live_status;
  auto live_context = context();
  live_context->set_deadline(std::chrono::system_clock::now() + std::chrono::minutes(5));
  std::thread live([&] {
    v1::WatchRequest request;
    request.set_run("job");
    auto reader = stubs_->metrics->Watch(live_context.get(), request);
    v1::MetricsEvent event;
    while (reader->Read(&event)) live_events.push_back(event);
    live_status = reader->Finish();
  });

  // Each report has its own deadline: a report that waited for a stuck
  // watcher would end DEADLINE_EXCEEDED instead of OK.
  grpc::Status report_status;
  int reported = 0;
  for (; reported < kEvents && report_status.ok(); ++reported) {
    v1::ReportAck ack;
    report_status = stubs_->metrics->Report(context().get(), epoch_report(reported), &ack);
  }
  v1::EndRunRequest end;
  end.set_name("job");
  end.set_state(v1::RUN_STATE_COMPLETED);
  v1::Run run;
  const grpc::Status end_status = stubs_->runs->EndRun(context().get(), end, &run);
  if (!report_status.ok() || !end_status.ok()) live_context->TryCancel();
  live.join();
  ASSERT_TRUE(report_status.ok()) << "report of epoch " << reported - 1 << ": "
                                  << report_status.error_message();
  ASSERT_TRUE(end_status.ok()) << end_status.error_message();

  v1::HistoryRequest history_request;
  history_request.set_run("job");
  v1::HistoryResponse history;
  ASSERT_TRUE(stubs_->metrics->History(context().get(), history_request, &history).ok());
  ASSERT_EQ(history.epochs_size(), kEvents);
  for (int i = 0; i < kEvents; ++i) ASSERT_EQ(history.epochs(i).epoch(), i);
  ASSERT_TRUE(live_status.ok()) << live_status.error_message();
  expect_every_event_in_order(live_events);

  for (auto& watch : stuck) {
    const auto [events, status] = watch->drain();
    ASSERT_TRUE(status.ok()) << status.error_message();
    expect_every_event_in_order(events);
  }
}

}  // namespace
}  // namespace xfer::coordinator::server::testing
