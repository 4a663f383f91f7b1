// coordctl's command line (usage errors and exit codes, no server) and a
// few commands end to end against the client tests' fake coordinator.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <sstream>

#include "common/sha256.h"
#include "coordinator/client/coordinator_client.h"
#include "coordinator/coordctl/commands.h"
#include "tests/coordinator/client_test_doubles.h"
#include "tests/coordinator/client_test_util.h"

namespace xfer::coordinator::coordctl {
namespace {

struct Parsed {
  std::variant<CommandLine, int> result;
  std::string out;
  std::string err;
  int exit_code() const { return std::holds_alternative<int>(result) ? std::get<int>(result) : -1; }
  const CommandLine& line() const { return std::get<CommandLine>(result); }
};

Parsed parse(const std::vector<std::string>& args) {
  std::ostringstream out, err;
  Parsed parsed{parse_command_line(args, out, err), "", ""};
  parsed.out = out.str();
  parsed.err = err.str();
  return parsed;
}

TEST(CoordctlUsageTest, UsageErrorsExitTwoWithAMessage) {
  const std::vector<std::vector<std::string>> bad = {
      {},                            // no command
      {"frobnicate"},                // unknown command
      {"metrics"},                   // missing RUN
      {"ranks"},                     // missing RUN
      {"watch"},                     // missing RUN
      {"checkpoints"},               // missing sub-command
      {"checkpoints", "get", "c1"},  // missing -o
      {"checkpoints", "delete"},     // missing ID
      {"checkpoints", "get", "c1", "-o", "f", "--run", "r", "--sha256", "ab"},  // exclusive
      {"metrics", "r1", "--csv", "--json"},                                     // two formats
      {"--timeout", "0", "runs"},                                               // not positive
      {"--retry-for", "-1", "runs"},                                            // negative
      {"ranks", "r1", "--threshold", "2"},                                      // out of range
      {"--tls-server-name", "x", "runs"},                                       // needs --tls-ca
      {"runs", "extra"},                                                        // stray argument
      {"report"},                                                               // missing RUN
      {"report", "r1", "r2"},                                                   // two runs
      {"checkpoints", "best", "r1", "--phase"},                                 // no phase value
      {"checkpoints", "list", "r1", "--phase", "head"},                         // not for list
  };
  for (const auto& args : bad) {
    const Parsed parsed = parse(args);
    std::string joined;
    for (const auto& a : args) joined += a + " ";
    EXPECT_EQ(parsed.exit_code(), kExitUsage) << joined;
    EXPECT_FALSE(parsed.err.empty()) << joined;
  }
}

TEST(CoordctlUsageTest, HelpExitsZero) {
  const Parsed parsed = parse({"--help"});
  EXPECT_EQ(parsed.exit_code(), kExitOk);
  EXPECT_NE(parsed.out.find("checkpoints"), std::string::npos) << parsed.out;
}

TEST(CoordctlUsageTest, CommandsAndGlobalFlagsInAnyOrder) {
  const Parsed metrics = parse({"metrics", "r1", "--json", "--coordinator", "host:1"});
  ASSERT_EQ(metrics.exit_code(), -1) << metrics.err;
  EXPECT_EQ(metrics.line().command.kind, CommandKind::kMetrics);
  EXPECT_EQ(metrics.line().command.run, "r1");
  EXPECT_TRUE(metrics.line().global.json);
  EXPECT_EQ(metrics.line().global.coordinator, "host:1");

  const Parsed csv = parse({"--token-file", "t", "metrics", "r2", "--csv"});
  ASSERT_EQ(csv.exit_code(), -1) << csv.err;
  EXPECT_TRUE(csv.line().command.csv);
  EXPECT_EQ(csv.line().global.token_file, "t");

  const Parsed get = parse({"checkpoints", "get", "c9", "-o", "/tmp/x.pt", "--run", "r3"});
  ASSERT_EQ(get.exit_code(), -1) << get.err;
  EXPECT_EQ(get.line().command.kind, CommandKind::kCheckpointsGet);
  EXPECT_EQ(get.line().command.id, "c9");
  EXPECT_EQ(get.line().command.output, "/tmp/x.pt");
  EXPECT_EQ(get.line().command.verify_run, "r3");

  const Parsed status = parse({"status"});
  ASSERT_EQ(status.exit_code(), -1);
  EXPECT_EQ(status.line().command.kind, CommandKind::kStatus);
  EXPECT_EQ(status.line().command.run, "");

  const Parsed best = parse({"checkpoints", "best", "r4"});
  ASSERT_EQ(best.exit_code(), -1);
  EXPECT_EQ(best.line().command.kind, CommandKind::kCheckpointsBest);
  EXPECT_EQ(best.line().command.phase, "");

  const Parsed head = parse({"checkpoints", "best", "r4", "--phase", "head"});
  ASSERT_EQ(head.exit_code(), -1) << head.err;
  EXPECT_EQ(head.line().command.phase, "head");
  const Parsed latest = parse({"--json", "checkpoints", "latest", "--phase", "finetune", "r4"});
  ASSERT_EQ(latest.exit_code(), -1) << latest.err;
  EXPECT_EQ(latest.line().command.kind, CommandKind::kCheckpointsLatest);
  EXPECT_EQ(latest.line().command.phase, "finetune");
  EXPECT_EQ(latest.line().command.run, "r4");

  const Parsed report = parse({"report", "r5", "--confusion"});
  ASSERT_EQ(report.exit_code(), -1) << report.err;
  EXPECT_EQ(report.line().command.kind, CommandKind::kReport);
  EXPECT_EQ(report.line().command.run, "r5");
  EXPECT_TRUE(report.line().command.confusion);
  EXPECT_FALSE(parse({"report", "r5"}).line().command.confusion);
  const Parsed html = parse({"report", "r5", "-o", "r5.html"});
  ASSERT_EQ(html.exit_code(), -1) << html.err;
  EXPECT_EQ(html.line().command.kind, CommandKind::kReport);
  EXPECT_EQ(html.line().command.output, "r5.html");
  EXPECT_EQ(parse({"report", "r5", "--output", "x.html"}).line().command.output, "x.html");
  EXPECT_EQ(parse({"report", "r5"}).line().command.output, "");
  EXPECT_EQ(parse({"report", "r5", "-o"}).exit_code(), kExitUsage);
}

TEST(CoordctlUsageTest, GlobalFlagsBecomeClientOptions) {
  const Parsed parsed = parse({"--coordinator", "h:9", "--timeout", "2.5", "--retry-for", "0",
                               "--tls-ca", "ca.pem", "runs"});
  ASSERT_EQ(parsed.exit_code(), -1) << parsed.err;
  const client::ClientOptions options = client_options(parsed.line().global);
  EXPECT_EQ(options.address, "h:9");
  EXPECT_EQ(options.call_deadline, std::chrono::milliseconds(2500));
  EXPECT_EQ(options.reconnect_window, std::chrono::milliseconds(0));
  EXPECT_EQ(options.tls_ca_file, "ca.pem");
}

// The whole program, argv to exit code.
int run(const std::vector<std::string>& args, std::string* out, std::string* err) {
  std::vector<const char*> argv{"coordctl"};
  for (const auto& a : args) argv.push_back(a.c_str());
  std::ostringstream out_stream, err_stream;
  const int code = run_coordctl(static_cast<int>(argv.size()), argv.data(), out_stream, err_stream);
  *out = out_stream.str();
  *err = err_stream.str();
  return code;
}

TEST(CoordctlRunTest, LocalAndRpcErrorsHaveTheirExitCodes) {
  client::testing::FakeCoordinator fake;
  client::testing::TempDir dir;
  std::string out, err;
  const auto empty_token = dir.write("empty.token", "\n").string();
  EXPECT_EQ(run({"--token-file", empty_token, "runs"}, &out, &err), kExitLocal);
  EXPECT_NE(err.find("empty.token"), std::string::npos) << err;

  // The fake refuses History with INVALID_ARGUMENT.
  EXPECT_EQ(run({"--coordinator", fake.address(), "metrics", "r1"}, &out, &err), kExitRpc);
  EXPECT_NE(err.find("INVALID_ARGUMENT"), std::string::npos) << err;
  EXPECT_NE(err.find(fake.address()), std::string::npos) << err;
  EXPECT_TRUE(out.empty()) << out;
}

TEST(CoordctlRunTest, WatchPrintsEveryEventAcrossAReconnect) {
  client::testing::FakeCoordinator fake;
  std::string out, err;
  ASSERT_EQ(run({"--coordinator", fake.address(), "--log-level", "off", "watch", "r1"}, &out, &err),
            kExitOk)
      << err;
  std::istringstream lines(out);
  std::vector<std::string> got;
  for (std::string line; std::getline(lines, line);) got.push_back(line);
  ASSERT_EQ(got.size(), 6u) << out;
  EXPECT_EQ(got[0].rfind("#1 head epoch 1 ", 0), 0u) << got[0];
  EXPECT_EQ(got[4].rfind("#5 head epoch 5 ", 0), 0u) << got[4];
  EXPECT_EQ(got[5], "run r1 completed (attempt 0)");
}

TEST(CoordctlRunTest, CheckpointGetVerifiesAnExpectedChecksum) {
  client::testing::FakeCoordinator fake;
  fake.checkpoints.break_first_get = false;
  fake.checkpoints.set_blob("c1", "checkpoint bytes");
  client::testing::TempDir dir;
  const std::string target = (dir.path() / "c1.pt").string();
  std::string out, err;
  EXPECT_EQ(run({"--coordinator", fake.address(), "checkpoints", "get", "c1", "-o", target,
                 "--sha256", std::string(64, 'f')},
                &out, &err),
            kExitChecksum);
  EXPECT_FALSE(std::filesystem::exists(target));

  const std::string sha = common::sha256_hex("checkpoint bytes");
  EXPECT_EQ(run({"--coordinator", fake.address(), "--json", "checkpoints", "get", "c1", "-o",
                 target, "--sha256", sha},
                &out, &err),
            kExitOk)
      << err;
  EXPECT_EQ(client::testing::read_file(target), "checkpoint bytes");
  const auto json = nlohmann::json::parse(out);
  EXPECT_EQ(json["sha256"], sha);
  EXPECT_EQ(json["verified"], true);
  EXPECT_EQ(json["size_bytes"], 16);
}

// A 2-class report stored in the fake through the client library.
void store_report(const client::testing::FakeCoordinator& fake) {
  v1::RunReport r;
  r.set_run("r1");
  r.set_split("test");
  r.set_samples(4);
  r.set_loss(0.5);
  r.set_top1(0.75);
  r.set_top3(1.0);
  r.set_num_classes(2);
  for (int count : {2, 0, 1, 1}) r.add_confusion(count);
  for (int i = 0; i < 2; ++i) {
    auto* c = r.add_classes();
    c->set_index(i);
    c->set_label(i == 0 ? "cat" : "dog");
    c->set_support(2);
  }
  client::CoordinatorClient(client::testing::fast_options(fake.address())).put_report(r);
}

TEST(CoordctlRunTest, ReportAsTextWithConfusionAndAsJson) {
  client::testing::FakeCoordinator fake;
  std::string out, err;
  EXPECT_EQ(run({"--coordinator", fake.address(), "report", "r1"}, &out, &err), kExitRpc);
  EXPECT_NE(err.find("run 'r1' has no report yet"), std::string::npos) << err;
  EXPECT_NE(err.find("NOT_FOUND"), std::string::npos) << err;
  store_report(fake);

  ASSERT_EQ(run({"--coordinator", fake.address(), "report", "r1"}, &out, &err), kExitOk) << err;
  EXPECT_NE(out.find("top-1:            75.00%\n"), std::string::npos) << out;
  EXPECT_NE(out.find("    1  dog       0.0000  0.0000  0.0000        2\n"), std::string::npos)
      << out;
  EXPECT_EQ(out.find("confusion matrix"), std::string::npos) << out;

  ASSERT_EQ(run({"--coordinator", fake.address(), "report", "r1", "--confusion"}, &out, &err),
            kExitOk)
      << err;
  EXPECT_NE(out.find("true\\pred  0  1\n"), std::string::npos) << out;
  EXPECT_NE(out.find("        1  1  1\n"), std::string::npos) << out;

  ASSERT_EQ(run({"--coordinator", fake.address(), "report", "r1", "--json"}, &out, &err), kExitOk)
      << err;
  const auto json = nlohmann::json::parse(out);
  EXPECT_EQ(json["run"], "r1");
  EXPECT_EQ(json["confusion"], nlohmann::json::parse("[[2, 0], [1, 1]]"));
  EXPECT_EQ(json["classes"][1]["label"], "dog");
}

TEST(CoordctlRunTest, CheckpointsBestAndLatestPassThePhase) {
  client::testing::FakeCoordinator fake;
  std::string out, err;
  ASSERT_EQ(run({"--coordinator", fake.address(), "--json", "checkpoints", "best", "r1", "--phase",
                 "finetune"},
                &out, &err),
            kExitOk)
      << err;
  EXPECT_EQ(nlohmann::json::parse(out)["id"], "best-finetune");
  ASSERT_EQ(run({"--coordinator", fake.address(), "checkpoints", "latest", "r1"}, &out, &err),
            kExitOk)
      << err;
  EXPECT_NE(out.find("latest-head"), std::string::npos) << out;
  EXPECT_EQ(run({"--coordinator", fake.address(), "checkpoints", "best", "r1", "--phase", "none"},
                &out, &err),
            kExitRpc);
  EXPECT_NE(err.find("has no checkpoint of phase 'none'"), std::string::npos) << err;
  EXPECT_EQ(fake.checkpoints.run_requests(),
            (std::vector<std::string>{"best:r1:finetune", "latest:r1:", "best:r1:none"}));
}

}  // namespace
}  // namespace xfer::coordinator::coordctl
