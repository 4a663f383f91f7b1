// The coordinator's security rules against a real server on 127.0.0.1:
// every RPC's role (admin vs read-only token), missing and wrong tokens,
// TLS with a CA and a server certificate made by the openssl command (a
// plaintext client and a client trusting another CA are refused), the
// loopback-only default and --insecure, and the token file mode warning.
#include <gmock/gmock.h>
#include <google/protobuf/descriptor.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdlib>
#include <functional>
#include <sstream>

#include "coordinator/client/coordinator_client.h"
#include "coordinator/server/auth.h"
#include "tests/coordinator/service_test_util.h"

namespace xfer::coordinator::server::testing {
namespace {

using ::testing::HasSubstr;

template <typename Reader, typename Message>
grpc::Status drain(Reader reader) {
  Message message;
  while (reader->Read(&message)) {
  }
  return reader->Finish();
}

class ServiceSecurityTest : public CoordinatorFixture {
 protected:
  // One RPC, called with a given token; returns its status. Streams are read
  // to their end so the handler's status is what comes back.
  struct RpcCase {
    const char* method;
    Role role;
    std::function<grpc::Status(Stubs&, const std::string& token)> call;
  };

  // Every method of the four services, with its role.
  static std::vector<RpcCase> every_rpc();
};

std::vector<ServiceSecurityTest::RpcCase> ServiceSecurityTest::every_rpc() {
  std::vector<RpcCase> cases;
  // ---- DataService
  cases.push_back({"GetDatasetInfo", Role::kRead, [](Stubs& s, const std::string& t) {
                     v1::GetDatasetInfoRequest request;
                     request.set_dataset("synthetic");
                     v1::DatasetInfo response;
                     return s.data->GetDatasetInfo(context(t).get(), request, &response);
                   }});
  cases.push_back({"ResolveSplit", Role::kRead, [](Stubs& s, const std::string& t) {
                     v1::ResolveSplitRequest request;
                     request.set_dataset("synthetic");
                     request.set_spec("test");
                     v1::ResolvedSplit response;
                     return s.data->ResolveSplit(context(t).get(), request, &response);
                   }});
  cases.push_back(
      {"StreamShard", Role::kAdmin, [](Stubs& s, const std::string& t) {
         v1::StreamShardRequest request;
         request.set_run("job");
         request.set_split("test");
         request.set_batch_size(10);
         auto ctx = context(t);
         return drain<decltype(s.data->StreamShard(ctx.get(), request)), v1::ShardBatch>(
             s.data->StreamShard(ctx.get(), request));
       }});
  // ---- RunService
  cases.push_back({"StartRun", Role::kAdmin, [](Stubs& s, const std::string& t) {
                     v1::StartRunRequest request;
                     request.set_name("other");
                     request.set_dataset("synthetic");
                     request.set_world_size(1);
                     v1::Run response;
                     return s.runs->StartRun(context(t).get(), request, &response);
                   }});
  cases.push_back({"GetRun", Role::kRead, [](Stubs& s, const std::string& t) {
                     v1::GetRunRequest request;
                     request.set_name("job");
                     v1::Run response;
                     return s.runs->GetRun(context(t).get(), request, &response);
                   }});
  cases.push_back({"ListRuns", Role::kRead, [](Stubs& s, const std::string& t) {
                     v1::ListRunsRequest request;
                     v1::ListRunsResponse response;
                     return s.runs->ListRuns(context(t).get(), request, &response);
                   }});
  cases.push_back({"EndRun", Role::kAdmin, [](Stubs& s, const std::string& t) {
                     v1::EndRunRequest request;
                     request.set_name("ghost");
                     request.set_state(v1::RUN_STATE_COMPLETED);
                     v1::Run response;
                     return s.runs->EndRun(context(t).get(), request, &response);
                   }});
  cases.push_back({"Heartbeat", Role::kAdmin, [](Stubs& s, const std::string& t) {
                     v1::HeartbeatRequest request;
                     request.set_run("ghost");
                     request.set_world_size(1);
                     request.set_attempt(1);
                     v1::HeartbeatResponse response;
                     return s.runs->Heartbeat(context(t).get(), request, &response);
                   }});
  cases.push_back({"GetStatus", Role::kRead, [](Stubs& s, const std::string& t) {
                     v1::GetStatusRequest request;
                     v1::StatusResponse response;
                     return s.runs->GetStatus(context(t).get(), request, &response);
                   }});
  cases.push_back({"PutReport", Role::kAdmin, [](Stubs& s, const std::string& t) {
                     v1::RunReport request;
                     request.set_run("ghost");
                     v1::PutReportResponse response;
                     return s.runs->PutReport(context(t).get(), request, &response);
                   }});
  cases.push_back({"GetReport", Role::kRead, [](Stubs& s, const std::string& t) {
                     v1::GetReportRequest request;
                     request.set_run("job");
                     v1::RunReport response;
                     return s.runs->GetReport(context(t).get(), request, &response);
                   }});
  // ---- MetricsService
  cases.push_back({"Report", Role::kAdmin, [](Stubs& s, const std::string& t) {
                     v1::MetricsReport request;
                     request.set_run("job");
                     request.set_phase("head");
                     request.set_split(v1::SPLIT_KIND_TRAIN);
                     request.set_samples(4);
                     v1::ReportAck response;
                     return s.metrics->Report(context(t).get(), request, &response);
                   }});
  cases.push_back({"Watch", Role::kRead, [](Stubs& s, const std::string& t) {
                     v1::WatchRequest request;
                     request.set_run("job");
                     auto ctx = context(t);
                     // The run is live: a Watch that got through would stream
                     // until the deadline; a second is enough to tell.
                     ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(1));
                     return drain<decltype(s.metrics->Watch(ctx.get(), request)), v1::MetricsEvent>(
                         s.metrics->Watch(ctx.get(), request));
                   }});
  cases.push_back({"History", Role::kRead, [](Stubs& s, const std::string& t) {
                     v1::HistoryRequest request;
                     request.set_run("job");
                     v1::HistoryResponse response;
                     return s.metrics->History(context(t).get(), request, &response);
                   }});
  cases.push_back({"Ranks", Role::kRead, [](Stubs& s, const std::string& t) {
                     v1::RanksRequest request;
                     request.set_run("job");
                     v1::RanksResponse response;
                     return s.metrics->Ranks(context(t).get(), request, &response);
                   }});
  // ---- CheckpointService
  cases.push_back({"Put", Role::kAdmin, [](Stubs& s, const std::string& t) {
                     auto ctx = context(t);
                     v1::CheckpointInfo response;
                     auto writer = s.checkpoints->Put(ctx.get(), &response);
                     writer->WritesDone();
                     return writer->Finish();
                   }});
  cases.push_back({"List", Role::kRead, [](Stubs& s, const std::string& t) {
                     v1::ListCheckpointsRequest request;
                     request.set_run("job");
                     v1::ListCheckpointsResponse response;
                     return s.checkpoints->List(context(t).get(), request, &response);
                   }});
  cases.push_back(
      {"Get", Role::kRead, [](Stubs& s, const std::string& t) {
         v1::GetCheckpointRequest request;
         request.set_id("ghost");
         auto ctx = context(t);
         return drain<decltype(s.checkpoints->Get(ctx.get(), request)), v1::CheckpointChunk>(
             s.checkpoints->Get(ctx.get(), request));
       }});
  cases.push_back({"Best", Role::kRead, [](Stubs& s, const std::string& t) {
                     v1::RunCheckpointRequest request;
                     request.set_run("job");
                     v1::CheckpointInfo response;
                     return s.checkpoints->Best(context(t).get(), request, &response);
                   }});
  cases.push_back({"Latest", Role::kRead, [](Stubs& s, const std::string& t) {
                     v1::RunCheckpointRequest request;
                     request.set_run("job");
                     v1::CheckpointInfo response;
                     return s.checkpoints->Latest(context(t).get(), request, &response);
                   }});
  cases.push_back({"Delete", Role::kAdmin, [](Stubs& s, const std::string& t) {
                     v1::DeleteCheckpointRequest request;
                     request.set_id("ghost");
                     v1::DeleteCheckpointResponse response;
                     return s.checkpoints->Delete(context(t).get(), request, &response);
                   }});
  return cases;
}

bool is_auth_refusal(const grpc::Status& status) {
  return status.error_code() == grpc::StatusCode::UNAUTHENTICATED ||
         status.error_code() == grpc::StatusCode::PERMISSION_DENIED;
}

TEST_F(ServiceSecurityTest, EveryRpcCoversEveryMethodOfTheProto) {
  // A method added to the proto must be added to every_rpc() too, with its role.
  const auto cases = every_rpc();
  int methods = 0;
  for (const char* name : {"xfer.v1.DataService", "xfer.v1.RunService", "xfer.v1.MetricsService",
                           "xfer.v1.CheckpointService"}) {
    const auto* service =
        google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(name);
    ASSERT_NE(service, nullptr) << name;
    methods += service->method_count();
    for (int i = 0; i < service->method_count(); ++i) {
      const std::string method = service->method(i)->name();
      EXPECT_TRUE(std::any_of(cases.begin(), cases.end(),
                              [&](const RpcCase& c) { return method == c.method; }))
          << "no case for " << name << "." << method;
    }
  }
  EXPECT_EQ(static_cast<int>(cases.size()), methods);
}

TEST_F(ServiceSecurityTest, ReadOnlyTokenIsDeniedEveryWriteRpcByName) {
  enable_auth();
  start();
  start_run("job", 1, kAdminToken);
  int writes = 0;
  for (const RpcCase& rpc : every_rpc()) {
    SCOPED_TRACE(rpc.method);
    const grpc::Status status = rpc.call(*stubs_, kReadToken);
    if (rpc.role == Role::kAdmin) {
      ++writes;
      EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED) << status.error_message();
      EXPECT_THAT(status.error_message(), HasSubstr(std::string(rpc.method) + ": the read-only"));
    } else {
      EXPECT_FALSE(is_auth_refusal(status)) << status.error_message();
    }
  }
  EXPECT_EQ(writes, 8);  // StreamShard StartRun EndRun Heartbeat PutReport Report Put Delete
}

TEST_F(ServiceSecurityTest, MissingMalformedAndWrongTokensAreUnauthenticatedEverywhere) {
  enable_auth();
  start();
  start_run("job", 1, kAdminToken);
  for (const RpcCase& rpc : every_rpc()) {
    SCOPED_TRACE(rpc.method);
    grpc::Status status = rpc.call(*stubs_, "");
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED) << status.error_message();
    EXPECT_THAT(status.error_message(), HasSubstr(std::string(rpc.method) + ": no authorization"));

    status = rpc.call(*stubs_, "wrong-token-0123456789abcdef");
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED) << status.error_message();
    EXPECT_THAT(status.error_message(), HasSubstr(std::string(rpc.method) + ": unknown token"));
    // The refusal never echoes what was sent.
    EXPECT_THAT(status.error_message(), ::testing::Not(HasSubstr("wrong-token")));

    // A token that differs from the admin token in its last character only.
    std::string almost(kAdminToken);
    almost.back() = almost.back() == 'x' ? 'y' : 'x';
    status = rpc.call(*stubs_, almost);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED) << status.error_message();
  }
  // Not "Bearer ": refused as malformed.
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->AddMetadata("authorization", std::string("Basic ") + kAdminToken);
  v1::GetStatusRequest request;
  v1::StatusResponse response;
  const grpc::Status status = stubs_->runs->GetStatus(ctx.get(), request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(status.error_message(), HasSubstr("not 'Bearer TOKEN'"));
}

TEST_F(ServiceSecurityTest, AdminTokenPassesEveryRpc) {
  enable_auth();
  start();
  start_run("job", 1, kAdminToken);
  for (const RpcCase& rpc : every_rpc()) {
    SCOPED_TRACE(rpc.method);
    const grpc::Status status = rpc.call(*stubs_, kAdminToken);
    EXPECT_FALSE(is_auth_refusal(status)) << status.error_message();
  }
}

TEST_F(ServiceSecurityTest, OnlyAReadTokenMeansNobodyMayWrite) {
  std::ofstream(root_ / "read.token") << kReadToken << "\n";
  options_.read_token_file = (root_ / "read.token").string();
  start();
  v1::GetStatusRequest request;
  v1::StatusResponse response;
  EXPECT_TRUE(stubs_->runs->GetStatus(context(kReadToken).get(), request, &response).ok());
  v1::StartRunRequest start_request;
  start_request.set_name("job");
  start_request.set_dataset("synthetic");
  start_request.set_world_size(1);
  v1::Run run;
  EXPECT_EQ(stubs_->runs->StartRun(context(kReadToken).get(), start_request, &run).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(stubs_->runs->StartRun(context().get(), start_request, &run).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
}

// ---- Listening address

TEST_F(ServiceSecurityTest, DefaultListenIsLoopback) {
  EXPECT_EQ(CoordinatorOptions{}.listen, "127.0.0.1:50051");
  EXPECT_FALSE(CoordinatorOptions{}.insecure);
}

TEST_F(ServiceSecurityTest, LoopbackHosts) {
  for (const char* host : {"127.0.0.1", "127.1.2.3", "localhost", "::1", "[::1]"}) {
    EXPECT_TRUE(is_loopback_host(host)) << host;
  }
  for (const char* host : {"0.0.0.0", "[::]", "::", "10.0.0.1", "128.0.0.1", "example.org",
                           "localhost.example.org", "", "[::1", "192.168.1.127"}) {
    EXPECT_FALSE(is_loopback_host(host)) << host;
  }
}

TEST_F(ServiceSecurityTest, AllInterfacesWithoutTokenIsRefusedUnlessInsecure) {
  options_.listen = "0.0.0.0:0";
  try {
    Coordinator coordinator(options_);
    FAIL() << "listened on 0.0.0.0 with no token";
  } catch (const std::invalid_argument& e) {
    EXPECT_THAT(e.what(), HasSubstr("--listen 0.0.0.0:0 is not a loopback address"));
    EXPECT_THAT(e.what(), HasSubstr("--insecure"));
  }

  options_.insecure = true;
  coordinator_ = std::make_unique<Coordinator>(options_);
  connect(grpc::InsecureChannelCredentials());
  v1::GetStatusRequest request;
  v1::StatusResponse response;
  EXPECT_TRUE(stubs_->runs->GetStatus(context().get(), request, &response).ok());
}

TEST_F(ServiceSecurityTest, AllInterfacesWithATokenStarts) {
  options_.listen = "0.0.0.0:0";
  enable_auth();
  coordinator_ = std::make_unique<Coordinator>(options_);
  connect(grpc::InsecureChannelCredentials());
  v1::GetStatusRequest request;
  v1::StatusResponse response;
  EXPECT_TRUE(stubs_->runs->GetStatus(context(kReadToken).get(), request, &response).ok());
  EXPECT_EQ(stubs_->runs->GetStatus(context().get(), request, &response).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
}

// ---- Token file mode

TEST_F(ServiceSecurityTest, TokenFileReadableByOthersIsWarnedAbout) {
  const fs::path file = root_ / "admin.token";
  std::ofstream(file) << kAdminToken << "\n";
  ASSERT_EQ(::chmod(file.c_str(), 0600), 0);
  EXPECT_EQ(token_file_mode_warning(file), std::nullopt);
  ASSERT_EQ(::chmod(file.c_str(), 0400), 0);
  EXPECT_EQ(token_file_mode_warning(file), std::nullopt);

  ASSERT_EQ(::chmod(file.c_str(), 0644), 0);
  auto warning = token_file_mode_warning(file);
  ASSERT_TRUE(warning.has_value());
  EXPECT_THAT(*warning, HasSubstr("has mode 0644"));
  EXPECT_THAT(*warning, HasSubstr("can read the token"));
  EXPECT_THAT(*warning, HasSubstr("chmod 600 " + file.string()));
  EXPECT_THAT(*warning, ::testing::Not(HasSubstr(kAdminToken)));

  ASSERT_EQ(::chmod(file.c_str(), 0640), 0);
  warning = token_file_mode_warning(file);
  ASSERT_TRUE(warning.has_value());
  EXPECT_THAT(*warning, HasSubstr("has mode 0640"));

  ASSERT_EQ(::chmod(file.c_str(), 0602), 0);  // others may write, not read
  warning = token_file_mode_warning(file);
  ASSERT_TRUE(warning.has_value());
  EXPECT_THAT(*warning, HasSubstr("have access to it"));

  EXPECT_EQ(token_file_mode_warning(root_ / "missing.token"), std::nullopt);
}

// ---- TLS with a CA

std::string read_file(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

void run_openssl(const std::string& command) {
  ASSERT_EQ(std::system((command + " >/dev/null 2>&1").c_str()), 0)
      << "openssl failed: " << command;
}

// A CA (ca.pem, ca.key) in `dir`, named `name`.
void make_ca(const fs::path& dir, const std::string& name) {
  run_openssl("openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=" + name + " -keyout " +
              (dir / (name + ".key")).string() + " -out " + (dir / (name + ".pem")).string());
}

class ServiceTlsCaTest : public CoordinatorFixture {
 protected:
  // ca.pem signs server.pem (for localhost and 127.0.0.1); other-ca.pem signs
  // nothing of ours.
  void make_certificates() {
    make_ca(root_, "ca");
    make_ca(root_, "other-ca");
    std::ofstream(root_ / "san.ext") << "subjectAltName=DNS:localhost,IP:127.0.0.1\n";
    run_openssl("openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout " +
                (root_ / "server.key").string() + " -out " + (root_ / "server.csr").string());
    run_openssl("openssl x509 -req -days 1 -in " + (root_ / "server.csr").string() + " -CA " +
                (root_ / "ca.pem").string() + " -CAkey " + (root_ / "ca.key").string() +
                " -CAcreateserial -extfile " + (root_ / "san.ext").string() + " -out " +
                (root_ / "server.pem").string());
    options_.tls_cert_file = (root_ / "server.pem").string();
    options_.tls_key_file = (root_ / "server.key").string();
  }

  grpc::Status get_status(const std::string& token = "") {
    auto ctx = context(token);
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::GetStatusRequest request;
    v1::StatusResponse response;
    return stubs_->runs->GetStatus(ctx.get(), request, &response);
  }

  std::shared_ptr<grpc::ChannelCredentials> trusting(const std::string& ca_file) {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = read_file(root_ / ca_file);
    return grpc::SslCredentials(ssl);
  }
};

TEST_F(ServiceTlsCaTest, CaSignedCertificateTrustedPlaintextAndOtherCaRefused) {
  make_certificates();
  enable_auth();
  coordinator_ = std::make_unique<Coordinator>(options_);

  connect(trusting("ca.pem"));
  grpc::Status status = get_status(kReadToken);
  ASSERT_TRUE(status.ok()) << status.error_message();
  // TLS does not replace the token.
  EXPECT_EQ(get_status().error_code(), grpc::StatusCode::UNAUTHENTICATED);

  connect(grpc::InsecureChannelCredentials());
  status = get_status(kReadToken);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();

  connect(trusting("other-ca.pem"));
  status = get_status(kReadToken);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
}

TEST_F(ServiceTlsCaTest, ClientLibraryWithCaFileAndToken) {
  make_certificates();
  enable_auth();
  coordinator_ = std::make_unique<Coordinator>(options_);

  client::ClientOptions options;
  options.address = "localhost:" + std::to_string(coordinator_->port());
  options.token_file = (root_ / "admin.token").string();
  options.tls_ca_file = (root_ / "ca.pem").string();
  options.reconnect_window = std::chrono::milliseconds(0);
  options.call_deadline = std::chrono::seconds(10);
  {
    client::CoordinatorClient client(options);
    v1::StartRunRequest request;
    request.set_name("tls-run");
    request.set_dataset("synthetic");
    request.set_world_size(1);
    EXPECT_EQ(client.start_run(request).name(), "tls-run");
  }

  options.tls_ca_file = (root_ / "other-ca.pem").string();
  client::CoordinatorClient untrusting(options);
  try {
    untrusting.get_status();
    FAIL() << "a client trusting another CA got an answer";
  } catch (const client::RpcError& e) {
    EXPECT_EQ(e.code(), grpc::StatusCode::UNAVAILABLE) << e.what();
  }
}

}  // namespace
}  // namespace xfer::coordinator::server::testing
