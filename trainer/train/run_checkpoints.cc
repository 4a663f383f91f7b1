#include "trainer/train/run_checkpoints.h"

#include <spdlog/spdlog.h>

#include <fstream>
#include <iterator>
#include <optional>
#include <stdexcept>
#include <utility>

#include "coordinator/client/errors.h"
#include "trainer/train/checkpoint_codec.h"
#include "trainer/train/collective.h"

namespace xfer::trainer::train {

namespace client = coordinator::client;
namespace fs = std::filesystem;

DecodedCheckpoint take_decoded(FetchedCheckpoint& fetched) {
  if (fetched.decoded) {
    DecodedCheckpoint decoded = std::move(*fetched.decoded);
    fetched.decoded.reset();
    return decoded;
  }
  return decode_checkpoint(fetched.bytes, "checkpoint " + fetched.id);
}

RunCheckpoints::RunCheckpoints(JobCoordinator& coordinator, dist::Communicator& host,
                               std::string run, fs::path run_dir)
    : coordinator_(coordinator), host_(host), run_(std::move(run)), run_dir_(std::move(run_dir)) {}

FetchedCheckpoint RunCheckpoints::fetch(const std::string& which, const std::string& phase,
                                        CheckpointUse use) {
  FetchedCheckpoint fetched;
  on_rank0(host_, "fetching checkpoint '" + which + "'", [&] {
    // `fetched` holds the checkpoint try_checkpoint accepted, if any.
    select_checkpoint(coordinator_, {run_, which, phase, use}, [&](const v1::CheckpointInfo& info) {
      return try_checkpoint(info, use, fetched);
    });
  });
  fetched.id = broadcast_string(host_, fetched.id, "checkpoint id");
  if (fetched.id.empty()) return fetched;  // every rank: none usable
  fetched.bytes = broadcast_bytes(host_, fetched.bytes, "checkpoint " + fetched.id);
  return fetched;
}

Unusable RunCheckpoints::try_checkpoint(const v1::CheckpointInfo& info, CheckpointUse use,
                                        FetchedCheckpoint& out) {
  const fs::path dir = run_dir_ / "checkpoints";
  fs::create_directories(dir);
  const fs::path file = dir / (info.id() + ".pt");
  std::optional<v1::CheckpointMeta> meta;
  try {
    // Verified twice: the coordinator hashes the blob before it sends a
    // byte (DATA_LOSS), the client hashes what arrived (ChecksumError).
    meta = coordinator_.get_checkpoint(info.id(), file, info.sha256());
  } catch (const client::ChecksumError& e) {
    return {"corrupt (SHA-256 mismatch)", std::string("corrupt (") + e.what() + ")"};
  } catch (const client::RpcError& e) {
    if (e.code() != grpc::StatusCode::DATA_LOSS) throw;
    return {"corrupt (DATA_LOSS at the coordinator)",
            "corrupt (DATA_LOSS: " + e.server_message() + ")"};
  }
  if (meta && meta->run() != run_) {
    throw std::runtime_error("checkpoint " + info.id() + " belongs to run '" + meta->run() +
                             "', not '" + run_ + "'");
  }
  std::vector<char> bytes;
  {
    std::ifstream in(file, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    if (!in.good() && !in.eof()) throw std::runtime_error("cannot read " + file.string());
  }
  const auto unusable = [&](std::string brief, std::string detail) {
    std::error_code ignored;
    fs::remove(file, ignored);  // the copy would only be mistaken for a good one
    return Unusable{std::move(brief), std::move(detail)};
  };
  DecodedCheckpoint decoded;
  try {
    decoded = decode_checkpoint(bytes, "checkpoint " + info.id());
  } catch (const std::exception& e) {
    // The bytes are the ones stored (their SHA-256 matched): whoever stored
    // them stored something else than a checkpoint.
    return unusable("not a checkpoint file", std::string("not a checkpoint file: ") + e.what());
  }
  if (use == CheckpointUse::kResume && !decoded.has_training_state) {
    return unusable("not resumable (no training state)",
                    "not resumable: it holds no training state (a model file, not a "
                    "checkpoint of training)");
  }
  spdlog::info("checkpoint {} ({} bytes, SHA-256 verified) from the coordinator", info.id(),
               bytes.size());
  out.id = info.id();
  out.bytes = std::move(bytes);
  out.decoded = std::make_shared<DecodedCheckpoint>(std::move(decoded));
  return {};
}

std::string RunCheckpoints::store(const v1::CheckpointMeta& meta, const std::vector<char>& bytes,
                                  const std::string& what, const std::string& consequence) {
  try {
    return coordinator_.put_checkpoint(meta, std::string_view(bytes.data(), bytes.size())).id();
  } catch (const client::RpcError& e) {
    // RESOURCE_EXHAUSTED: the coordinator's disk is full (final at once).
    // UNAVAILABLE, DEADLINE_EXCEEDED: another I/O error, or the coordinator
    // away, after the client's retries. The store left the previous
    // checkpoints intact and nothing half-written. Anything else is a
    // refused request that the next checkpoint would repeat.
    if (e.code() != grpc::StatusCode::RESOURCE_EXHAUSTED &&
        e.code() != grpc::StatusCode::UNAVAILABLE &&
        e.code() != grpc::StatusCode::DEADLINE_EXCEEDED) {
      throw;
    }
    spdlog::warn("the checkpoint of {} was not stored: {}; {}", what, e.what(), consequence);
    return {};
  }
}

}  // namespace xfer::trainer::train
