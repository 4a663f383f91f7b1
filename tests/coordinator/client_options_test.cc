// Client options, token files and TLS CA files: every mistake is a
// ClientError that names the file or the field.
#include <gtest/gtest.h>

#include <string>

#include "coordinator/client/coordinator_client.h"
#include "coordinator/client/credentials.h"
#include "tests/coordinator/client_test_util.h"

namespace xfer::coordinator::client {
namespace {

using testing::TempDir;

// The message of the ClientError `call` throws ("" and a failure if none).
template <typename Call>
std::string client_error_of(Call&& call) {
  try {
    call();
  } catch (const ClientError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a ClientError";
  return "";
}

TEST(TokenFileTest, FirstLineTrimmed) {
  TempDir dir;
  EXPECT_EQ(read_token_file(dir.write("t", "\tabc def  \r\nxyz\n")), "abc def");
  EXPECT_EQ(read_token_file(dir.write("u", "no-newline")), "no-newline");
}

TEST(TokenFileTest, MissingFileIsNamed) {
  TempDir dir;
  const auto path = dir.path() / "absent.token";
  const std::string message = client_error_of([&] { read_token_file(path); });
  EXPECT_NE(message.find(path.string()), std::string::npos) << message;
}

TEST(TokenFileTest, EmptyFileOrBlankFirstLineIsAnError) {
  TempDir dir;
  for (const std::string contents : {"", "   \n", "\nsecond-line-token\n"}) {
    const auto path = dir.write("empty.token", contents);
    const std::string message = client_error_of([&] { read_token_file(path); });
    EXPECT_NE(message.find(path.string()), std::string::npos) << message;
    EXPECT_NE(message.find("empty"), std::string::npos) << message;
  }
}

TEST(TokenFileTest, ClientConstructionFailsOnABadTokenFile) {
  TempDir dir;
  ClientOptions options;
  options.token_file = dir.write("empty.token", "").string();
  const std::string message = client_error_of([&] { CoordinatorClient client(options); });
  EXPECT_NE(message.find("empty.token"), std::string::npos) << message;
}

TEST(TlsTest, MissingOrEmptyCaFileIsNamed) {
  TempDir dir;
  ClientOptions options;
  options.tls_ca_file = (dir.path() / "absent.pem").string();
  EXPECT_NE(client_error_of([&] { make_channel(options); }).find("absent.pem"), std::string::npos);
  options.tls_ca_file = dir.write("empty.pem", "").string();
  EXPECT_NE(client_error_of([&] { make_channel(options); }).find("empty.pem"), std::string::npos);
}

TEST(ClientOptionsTest, DefaultsAreValid) { EXPECT_NO_THROW(validate(ClientOptions())); }

TEST(ClientOptionsTest, EachBrokenFieldIsNamed) {
  struct Case {
    const char* field;
    void (*breaks)(ClientOptions&);
  };
  const Case cases[] = {
      {"address", [](ClientOptions& o) { o.address.clear(); }},
      {"call_deadline", [](ClientOptions& o) { o.call_deadline = std::chrono::milliseconds(0); }},
      {"stream_deadline",
       [](ClientOptions& o) { o.stream_deadline = std::chrono::milliseconds(-1); }},
      {"reconnect_window",
       [](ClientOptions& o) { o.reconnect_window = std::chrono::milliseconds(-5); }},
      {"max_message_bytes", [](ClientOptions& o) { o.max_message_bytes = 1000; }},
      {"chunk_bytes", [](ClientOptions& o) { o.chunk_bytes = o.max_message_bytes; }},
      {"tls_server_name", [](ClientOptions& o) { o.tls_server_name = "coordinator.example"; }},
      {"backoff", [](ClientOptions& o) { o.backoff.jitter = 2.0; }},
  };
  for (const auto& c : cases) {
    ClientOptions options;
    c.breaks(options);
    const std::string message = client_error_of([&] { validate(options); });
    EXPECT_NE(message.find(c.field), std::string::npos) << c.field << ": " << message;
  }
}

}  // namespace
}  // namespace xfer::coordinator::client
