// Ranks as threads of one process, for the training job's unit tests: each
// rank gets a dist::Communicator whose collectives wait until every rank has
// called them, in the same order, as MPI's do (gloo's BaseTest::spawn does
// the same). allreduce sums float32/float64/int32/int64 buffers; broadcast,
// allgather and barrier are what MPI's are. A rank left waiting for more
// than 10 s fails instead of hanging the test. No MPI.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "trainer/dist/communicator.h"

namespace xfer::trainer::train::testing {

class ThreadWorld {
 public:
  explicit ThreadWorld(int size) : size_(size), slots_(static_cast<std::size_t>(size)) {
    for (int r = 0; r < size; ++r) comms_.push_back(std::make_unique<Comm>(*this, r));
  }

  int size() const { return size_; }
  dist::Communicator& comm(int rank) { return *comms_.at(static_cast<std::size_t>(rank)); }

  // Runs fn(comm of rank r) for every rank on its own thread and waits for
  // all; rethrows the lowest rank's exception.
  void run(const std::function<void(dist::Communicator&)>& fn) {
    std::vector<std::exception_ptr> errors(static_cast<std::size_t>(size_));
    std::vector<std::thread> threads;
    for (int r = 0; r < size_; ++r) {
      threads.emplace_back([&, r] {
        try {
          fn(comm(r));
        } catch (...) {
          errors[static_cast<std::size_t>(r)] = std::current_exception();
        }
      });
    }
    for (auto& t : threads) t.join();
    for (const auto& e : errors) {
      if (e) std::rethrow_exception(e);
    }
  }

 private:
  class DoneWork final : public dist::Work {
   public:
    bool wait(std::chrono::milliseconds) override { return true; }
    bool done() const override { return true; }
  };

  class Comm final : public dist::Communicator {
   public:
    Comm(ThreadWorld& world, int rank) : world_(world), rank_(rank) {}
    int rank() const override { return rank_; }
    int size() const override { return world_.size_; }
    const char* backend() const override { return "threads"; }
    bool supports(dist::DeviceType device) const override {
      return device == dist::DeviceType::kCpu;
    }
    std::shared_ptr<dist::Work> allreduce(const dist::Buffer& buffer, dist::ReduceOp op,
                                          const std::string& label) override {
      const auto all = world_.exchange(rank_, buffer.data, buffer.bytes(), label);
      switch (buffer.type) {
        case dist::DataType::kFloat32:
          reduce<float>(all, buffer, op);
          break;
        case dist::DataType::kFloat64:
          reduce<double>(all, buffer, op);
          break;
        case dist::DataType::kInt32:
          reduce<std::int32_t>(all, buffer, op);
          break;
        case dist::DataType::kInt64:
          reduce<std::int64_t>(all, buffer, op);
          break;
        default:
          throw std::invalid_argument(label + ": the thread world does not reduce this type");
      }
      return std::make_shared<DoneWork>();
    }
    void broadcast(const dist::Buffer& buffer, int root, const std::string& label) override {
      const auto all = world_.exchange(rank_, buffer.data, buffer.bytes(), label);
      const auto& from = all.at(static_cast<std::size_t>(root));
      if (from.size() != buffer.bytes()) throw std::logic_error(label + ": sizes differ");
      std::memcpy(buffer.data, from.data(), from.size());
    }
    std::vector<std::byte> allgather(const void* data, std::size_t bytes,
                                     const std::string& label) override {
      std::vector<std::byte> out;
      for (const auto& blob : world_.exchange(rank_, data, bytes, label)) {
        out.insert(out.end(), blob.begin(), blob.end());
      }
      return out;
    }
    void barrier(const std::string& label) override { world_.exchange(rank_, nullptr, 0, label); }

   private:
    template <typename T>
    static void reduce(const std::vector<std::vector<std::byte>>& all, const dist::Buffer& buffer,
                       dist::ReduceOp op) {
      auto* out = static_cast<T*>(buffer.data);
      for (std::size_t i = 0; i < buffer.count; ++i) {
        T sum = 0;
        for (const auto& blob : all) {
          T v{};
          std::memcpy(&v, blob.data() + i * sizeof(T), sizeof(T));
          sum += v;
        }
        out[i] =
            op == dist::ReduceOp::kAverage ? static_cast<T>(sum / static_cast<T>(all.size())) : sum;
      }
    }

    ThreadWorld& world_;
    const int rank_;
  };

  // Every rank's bytes of one collective, once all ranks have sent theirs.
  std::vector<std::vector<std::byte>> exchange(int rank, const void* data, std::size_t bytes,
                                               const std::string& label) {
    std::unique_lock<std::mutex> lock(mutex_);
    const auto* begin = static_cast<const std::byte*>(data);
    slots_[static_cast<std::size_t>(rank)].assign(begin, begin + (data ? bytes : 0));
    const std::uint64_t generation = generation_;
    if (++arrived_ == size_) {
      results_ = slots_;
      arrived_ = 0;
      ++generation_;
      changed_.notify_all();
    } else if (!changed_.wait_for(lock, std::chrono::seconds(10),
                                  [&] { return generation_ != generation; })) {
      throw std::runtime_error("rank " + std::to_string(rank) + ": " + label +
                               ": the other ranks did not call it within 10 s");
    }
    return results_;
  }

  const int size_;
  std::vector<std::unique_ptr<Comm>> comms_;
  std::mutex mutex_;
  std::condition_variable changed_;
  int arrived_ = 0;
  std::uint64_t generation_ = 0;
  std::vector<std::vector<std::byte>> slots_;
  std::vector<std::vector<std::byte>> results_;
};

}  // namespace xfer::trainer::train::testing
