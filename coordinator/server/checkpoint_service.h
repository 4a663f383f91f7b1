// CheckpointService: uploads in chunks, verified downloads, best/latest
// lookup and deletion over the durable store (checkpoint/checkpoint_store.h).
#pragma once

#include <atomic>

#include "coordinator/checkpoint/checkpoint_store.h"
#include "coordinator/server/auth.h"
#include "coordinator/server/recent_errors.h"
#include "coordinator/server/run_registry.h"
#include "xfer/v1/coordinator.grpc.pb.h"

namespace xfer::coordinator::server {

class CheckpointServiceImpl final : public v1::CheckpointService::Service {
 public:
  // Every argument must outlive the service. Get sends data in chunks of
  // `chunk_bytes`. `crash_in_put` > 0 is the test hook of
  // CoordinatorOptions::test_crash_in_put: the process SIGKILLs itself on
  // the first data chunk of the crash_in_put-th Put.
  CheckpointServiceImpl(checkpoint::CheckpointStore& store, const RunRegistry& runs,
                        RecentErrors& errors, const Authorizer& auth, std::int64_t chunk_bytes,
                        int crash_in_put = 0);

  grpc::Status Put(grpc::ServerContext* context, grpc::ServerReader<v1::CheckpointChunk>* reader,
                   v1::CheckpointInfo* response) override;
  grpc::Status List(grpc::ServerContext* context, const v1::ListCheckpointsRequest* request,
                    v1::ListCheckpointsResponse* response) override;
  grpc::Status Get(grpc::ServerContext* context, const v1::GetCheckpointRequest* request,
                   grpc::ServerWriter<v1::CheckpointChunk>* writer) override;
  grpc::Status Best(grpc::ServerContext* context, const v1::RunCheckpointRequest* request,
                    v1::CheckpointInfo* response) override;
  grpc::Status Latest(grpc::ServerContext* context, const v1::RunCheckpointRequest* request,
                      v1::CheckpointInfo* response) override;
  grpc::Status Delete(grpc::ServerContext* context, const v1::DeleteCheckpointRequest* request,
                      v1::DeleteCheckpointResponse* response) override;

 private:
  grpc::Status status_of(const checkpoint::CheckpointError& error, const char* method);

  checkpoint::CheckpointStore& store_;
  const RunRegistry& runs_;
  RecentErrors& errors_;
  const Authorizer& auth_;
  const std::int64_t chunk_bytes_;
  const int crash_in_put_;

  std::atomic<int> puts_received_{0};  // Puts whose meta was accepted
};

v1::CheckpointInfo to_proto(const checkpoint::CheckpointRecord& record);

}  // namespace xfer::coordinator::server
