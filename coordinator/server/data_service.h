// DataService: dataset descriptions, split resolution and the per-rank
// stream of shard batches (see coordinator.proto and sharding/shard_plan.h).
#pragma once

#include "coordinator/server/auth.h"
#include "coordinator/server/dataset_registry.h"
#include "coordinator/server/run_registry.h"
#include "xfer/v1/coordinator.grpc.pb.h"

namespace xfer::coordinator::server {

class DataServiceImpl final : public v1::DataService::Service {
 public:
  // All three must outlive the service.
  DataServiceImpl(const DatasetRegistry& datasets, const RunRegistry& runs, const Authorizer& auth,
                  int max_batch_size);

  grpc::Status GetDatasetInfo(grpc::ServerContext* context,
                              const v1::GetDatasetInfoRequest* request,
                              v1::DatasetInfo* response) override;
  grpc::Status ResolveSplit(grpc::ServerContext* context, const v1::ResolveSplitRequest* request,
                            v1::ResolvedSplit* response) override;
  grpc::Status StreamShard(grpc::ServerContext* context, const v1::StreamShardRequest* request,
                           grpc::ServerWriter<v1::ShardBatch>* writer) override;

 private:
  const DatasetRegistry& datasets_;
  const RunRegistry& runs_;
  const Authorizer& auth_;
  const int max_batch_size_;
};

}  // namespace xfer::coordinator::server
