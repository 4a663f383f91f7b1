// TLS on the coordinator: a client that trusts the server's certificate gets
// through; a plaintext client does not. The certificate is made at test time
// with the openssl command (Debian package openssl).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <sstream>

#include "tests/coordinator/service_test_util.h"

namespace xfer::coordinator::server::testing {
namespace {

std::string read_file(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

class ServiceTlsTest : public CoordinatorFixture {
 protected:
  void make_certificate() {
    const std::string command =
        "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost "
        "-addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout " +
        (root_ / "key.pem").string() + " -out " + (root_ / "cert.pem").string() +
        " >/dev/null 2>&1";
    ASSERT_EQ(std::system(command.c_str()), 0) << "openssl failed: " << command;
    options_.tls_cert_file = (root_ / "cert.pem").string();
    options_.tls_key_file = (root_ / "key.pem").string();
  }
};

TEST_F(ServiceTlsTest, TrustedClientConnectsPlaintextClientDoesNot) {
  make_certificate();
  coordinator_ = std::make_unique<Coordinator>(options_);

  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = read_file(root_ / "cert.pem");
  connect(grpc::SslCredentials(ssl));
  v1::GetStatusRequest request;
  v1::StatusResponse response;
  const grpc::Status ok = stubs_->runs->GetStatus(context().get(), request, &response);
  ASSERT_TRUE(ok.ok()) << ok.error_message();
  EXPECT_EQ(response.datasets(0), "synthetic");

  connect(grpc::InsecureChannelCredentials());
  auto ctx = context();
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  const grpc::Status refused = stubs_->runs->GetStatus(ctx.get(), request, &response);
  EXPECT_FALSE(refused.ok());
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::UNAVAILABLE) << refused.error_message();
}

TEST_F(ServiceTlsTest, KeyThatIsNotPemIsRefusedAtStartup) {
  make_certificate();
  std::ofstream(root_ / "key.pem") << "not a key\n";
  try {
    coordinator_ = std::make_unique<Coordinator>(options_);
    FAIL() << "started with a broken key";
  } catch (const std::invalid_argument& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr("not a PEM file"));
  }
}

}  // namespace
}  // namespace xfer::coordinator::server::testing
