#include "coordinator/server/data_service.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>

#include "coordinator/dataset/split_spec.h"
#include "coordinator/sharding/shard_plan.h"

namespace xfer::coordinator::server {
namespace {

namespace ds = dataset;

grpc::Status invalid(const std::string& message) {
  return {grpc::StatusCode::INVALID_ARGUMENT, message};
}

grpc::Status unknown_dataset(const char* method, const std::string& name,
                             const DatasetRegistry& datasets) {
  return {grpc::StatusCode::NOT_FOUND, std::string(method) + ": no dataset '" + name +
                                           "' (served: " + datasets.names_joined() + ")"};
}

}  // namespace

DataServiceImpl::DataServiceImpl(const DatasetRegistry& datasets, const RunRegistry& runs,
                                 const Authorizer& auth, int max_batch_size)
    : datasets_(datasets), runs_(runs), auth_(auth), max_batch_size_(max_batch_size) {}

grpc::Status DataServiceImpl::GetDatasetInfo(grpc::ServerContext* context,
                                             const v1::GetDatasetInfoRequest* request,
                                             v1::DatasetInfo* response) {
  if (auto status = auth_.check(*context, Role::kRead, "GetDatasetInfo"); !status.ok()) {
    return status;
  }
  const ds::CifarDataset* dataset = datasets_.find(request->dataset());
  if (dataset == nullptr) return unknown_dataset("GetDatasetInfo", request->dataset(), datasets_);
  response->set_name(request->dataset());
  for (const auto& [name, size] : dataset->split_sizes()) {
    (*response->mutable_split_sizes())[name] = size;
  }
  for (const auto& name : dataset->fine_label_names) response->add_fine_label_names(name);
  for (const auto& name : dataset->coarse_label_names) response->add_coarse_label_names(name);
  return grpc::Status::OK;
}

grpc::Status DataServiceImpl::ResolveSplit(grpc::ServerContext* context,
                                           const v1::ResolveSplitRequest* request,
                                           v1::ResolvedSplit* response) {
  if (auto status = auth_.check(*context, Role::kRead, "ResolveSplit"); !status.ok()) {
    return status;
  }
  const ds::CifarDataset* dataset = datasets_.find(request->dataset());
  if (dataset == nullptr) return unknown_dataset("ResolveSplit", request->dataset(), datasets_);
  try {
    const ds::ResolvedSplit split = ds::resolve_split(request->spec(), dataset->split_sizes());
    response->set_spec(split.spec);
    response->set_num_examples(split.size());
    for (const auto& range : split.ranges) {
      auto* out = response->add_ranges();
      out->set_split(range.split);
      out->set_begin(range.begin);
      out->set_end(range.end);
    }
  } catch (const ds::SplitSpecError& e) {
    return invalid(std::string("ResolveSplit: ") + e.what());
  }
  return grpc::Status::OK;
}

grpc::Status DataServiceImpl::StreamShard(grpc::ServerContext* context,
                                          const v1::StreamShardRequest* request,
                                          grpc::ServerWriter<v1::ShardBatch>* writer) {
  if (auto status = auth_.check(*context, Role::kAdmin, "StreamShard"); !status.ok()) {
    return status;
  }
  const auto run = runs_.get(request->run());
  if (!run) {
    return {grpc::StatusCode::NOT_FOUND,
            "StreamShard: no run '" + request->run() + "' (start it with StartRun first)"};
  }
  if (run->state() != v1::RUN_STATE_RUNNING) {
    return {grpc::StatusCode::FAILED_PRECONDITION, "StreamShard: run '" + request->run() + "' is " +
                                                       v1::RunState_Name(run->state()) +
                                                       " (expected RUN_STATE_RUNNING)"};
  }
  if (request->world_size() != run->world_size()) {
    return invalid("StreamShard: world_size " + std::to_string(request->world_size()) +
                   " differs from run '" + run->name() + "' world size " +
                   std::to_string(run->world_size()));
  }
  if (request->rank() < 0 || request->rank() >= request->world_size()) {
    return invalid("StreamShard: rank " + std::to_string(request->rank()) +
                   " is outside the world (expected 0.." +
                   std::to_string(request->world_size() - 1) + ")");
  }
  if (request->batch_size() < 1 || request->batch_size() > max_batch_size_) {
    return invalid("StreamShard: batch_size " + std::to_string(request->batch_size()) +
                   " is out of range (expected 1.." + std::to_string(max_batch_size_) + ")");
  }
  if (request->kind() != v1::SHARD_KIND_TRAIN && request->kind() != v1::SHARD_KIND_EVAL) {
    return invalid("StreamShard: kind must be SHARD_KIND_TRAIN or SHARD_KIND_EVAL");
  }
  if (request->end_batch() < 0 ||
      (request->end_batch() > 0 && request->end_batch() <= request->start_batch())) {
    return invalid("StreamShard: end_batch " + std::to_string(request->end_batch()) +
                   " must be 0 (the whole shard) or above start_batch " +
                   std::to_string(request->start_batch()));
  }
  const ds::CifarDataset* dataset = datasets_.find(run->dataset());
  if (dataset == nullptr) return unknown_dataset("StreamShard", run->dataset(), datasets_);

  ds::ResolvedSplit split;
  sharding::ShardPlan plan;
  try {
    split = ds::resolve_split(request->split(), dataset->split_sizes());
    sharding::ShardRequest shard;
    shard.kind = request->kind() == v1::SHARD_KIND_TRAIN ? sharding::ShardKind::kTrain
                                                         : sharding::ShardKind::kEval;
    shard.epoch = request->epoch();
    shard.seed = request->seed();
    shard.shuffle = request->shuffle();
    shard.world_size = request->world_size();
    shard.rank = request->rank();
    shard.batch_size = request->batch_size();
    shard.start_batch = request->start_batch();
    plan = sharding::plan_shard(shard, split.size());
  } catch (const ds::SplitSpecError& e) {
    return invalid(std::string("StreamShard: ") + e.what());
  } catch (const sharding::ShardError& e) {
    return invalid(std::string("StreamShard: ") + e.what());
  }

  const std::int64_t end = request->end_batch() > 0
                               ? std::min(request->end_batch(), plan.num_batches())
                               : plan.num_batches();
  const bool with_images = !request->labels_only();
  v1::ShardBatch batch;
  for (std::int64_t b = plan.start_batch(); b < end; ++b) {
    if (context->IsCancelled()) {
      return {grpc::StatusCode::CANCELLED, "StreamShard: cancelled by the client"};
    }
    const std::vector<std::int64_t> positions = plan.batch(b);
    const int count = static_cast<int>(positions.size());
    batch.Clear();
    batch.set_batch_index(b);
    batch.set_num_batches(plan.num_batches());
    batch.set_count(count);
    batch.set_dropped_samples(plan.dropped_samples());
    std::string* images = batch.mutable_images();
    std::string* labels = batch.mutable_labels();
    if (with_images) images->resize(static_cast<std::size_t>(count) * ds::kImageBytes);
    labels->resize(static_cast<std::size_t>(count));
    for (int i = 0; i < count; ++i) {
      const auto [split_name, index] = split.locate(positions[i]);
      const ds::CifarSplit& records = dataset->split(*split_name);
      const auto record = static_cast<std::size_t>(index);
      if (with_images) {
        std::memcpy(images->data() + static_cast<std::size_t>(i) * ds::kImageBytes,
                    records.image(record), ds::kImageBytes);
      }
      (*labels)[static_cast<std::size_t>(i)] = static_cast<char>(records.fine_label(record));
      batch.add_sample_indices(positions[i]);
    }
    if (!writer->Write(batch)) {
      return {grpc::StatusCode::UNAVAILABLE,
              "StreamShard: the client went away at batch " + std::to_string(b)};
    }
  }
  return grpc::Status::OK;
}

}  // namespace xfer::coordinator::server
