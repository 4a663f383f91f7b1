// CheckpointStore on the fault-injecting filesystem: full disk, fsync and
// rename failures, torn writes, and a simulated power loss at every
// filesystem call of a put, a delete and a recovery. After each, a fresh
// store on the same folder must open, list either the state before or the
// state after the interrupted operation, and verify every checkpoint it
// lists, with nothing stray left on disk.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cerrno>
#include <functional>
#include <iostream>
#include <map>
#include <set>

#include "common/fault_injecting_filesystem.h"
#include "common/posix_filesystem.h"
#include "coordinator/checkpoint/checkpoint_store.h"
#include "tests/coordinator/checkpoint_test_util.h"

namespace xfer::coordinator::checkpoint::testing {
namespace {

using common::FaultInjectingFilesystem;
using common::Filesystem;
using common::posix_filesystem;
using common::SimulatedCrash;
using common::write_file_atomically;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Op = FaultInjectingFilesystem::Op;

StoreOptions keep(int best, int last) {
  StoreOptions options;
  options.keep_best = best;
  options.keep_last = last;
  return options;
}

FaultInjectingFilesystem::PathMatch ending(const std::string& suffix) {
  return [suffix](const std::string& path) {
    return path.size() >= suffix.size() &&
           path.compare(path.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
}

// Fails only the n-th matching call (1-based): e.g. the second folder fsync
// of a put, which is the manifest's.
FaultInjectingFilesystem::PathMatch nth_call(int n) {
  auto count = std::make_shared<int>(0);
  return [count, n](const std::string&) { return ++*count == n; };
}

// A store with two committed checkpoints, on a fault-injecting filesystem.
class CheckpointFaultTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = std::make_unique<CheckpointStore>(tmp_.store(), keep(1, 1), fs_);
    a_ = put(*store_, make_meta("job", 1, 0.5), blob_a_);
    b_ = put(*store_, make_meta("job", 2, 0.7), blob_b_);
  }

  // The put every test tries: epoch 3, which retention would make the
  // "last" checkpoint, dropping b.
  CheckpointError failed_put() {
    try {
      put(*store_, make_meta("job", 3, 0.6), make_blob(3, 5000), 1024);
    } catch (const CheckpointError& e) {
      return e;
    }
    ADD_FAILURE() << "the put succeeded despite the injected fault";
    return CheckpointError(CheckpointError::Code::kInvalidArgument, "no error");
  }

  // The previous checkpoints are intact, in this store, on disk and in a
  // store reopened on the real filesystem; nothing else is on disk.
  void expect_previous_intact() {
    EXPECT_THAT(ids_of(store_->list("job")), ElementsAre(a_.id, b_.id));
    EXPECT_EQ(store_->read_verified(a_.id), blob_a_);
    EXPECT_EQ(store_->read_verified(b_.id), blob_b_);
    EXPECT_EQ(names_in(tmp_.store()), expected_names({a_, b_}));
    CheckpointStore reopened(tmp_.store(), keep(1, 1));
    EXPECT_THAT(ids_of(reopened.list("job")), ElementsAre(a_.id, b_.id));
    EXPECT_EQ(reopened.read_verified(a_.id), blob_a_);
    EXPECT_EQ(reopened.read_verified(b_.id), blob_b_);
  }

  // Once the fault is gone the same store takes the put.
  void expect_usable_again() {
    fs_->clear_faults();
    const auto c = put(*store_, make_meta("job", 3, 0.6), make_blob(3, 5000), 1024);
    EXPECT_THAT(ids_of(store_->list("job")), ElementsAre(a_.id, c.id));
    EXPECT_EQ(names_in(tmp_.store()), expected_names({a_, c}));
  }

  TempDir tmp_;
  std::shared_ptr<FaultInjectingFilesystem> fs_ =
      std::make_shared<FaultInjectingFilesystem>(posix_filesystem());
  std::unique_ptr<CheckpointStore> store_;
  const std::string blob_a_ = make_blob(1, 3000);
  const std::string blob_b_ = make_blob(2, 4000);
  CheckpointRecord a_, b_;
};

TEST_F(CheckpointFaultTest, FullDiskDuringTheBlobNamesThePathAndErrno) {
  fs_->set_free_space(2000);
  const CheckpointError e = failed_put();
  EXPECT_EQ(e.code(), CheckpointError::Code::kIo);
  EXPECT_THAT(e.what(), AllOf(HasSubstr(tmp_.store() + "/ckpt-00000003.blob.tmp"),
                              HasSubstr("No space left on device"), HasSubstr("epoch 3"),
                              HasSubstr("previous checkpoints are intact")));
  expect_previous_intact();
  expect_usable_again();
}

TEST_F(CheckpointFaultTest, FullDiskDuringTheManifest) {
  fs_->set_free_space(5000 + 100);  // the blob fits, the manifest does not
  const CheckpointError e = failed_put();
  EXPECT_EQ(e.code(), CheckpointError::Code::kIo);
  EXPECT_THAT(e.what(), AllOf(HasSubstr("MANIFEST.json.tmp"), HasSubstr("No space left")));
  expect_previous_intact();
  expect_usable_again();
}

TEST_F(CheckpointFaultTest, TornBlobWrite) {
  fs_->tear_writes(ending(".blob.tmp"), 100);
  const CheckpointError e = failed_put();
  EXPECT_EQ(e.code(), CheckpointError::Code::kIo);
  EXPECT_THAT(e.what(), HasSubstr("torn write"));
  expect_previous_intact();
  expect_usable_again();
}

TEST_F(CheckpointFaultTest, TornManifestWrite) {
  fs_->tear_writes(ending("MANIFEST.json.tmp"), 50);
  EXPECT_EQ(failed_put().code(), CheckpointError::Code::kIo);
  expect_previous_intact();
  expect_usable_again();
}

TEST_F(CheckpointFaultTest, BlobFsyncFailure) {
  fs_->fail(Op::kSync, ending(".blob.tmp"));
  const CheckpointError e = failed_put();
  EXPECT_EQ(e.code(), CheckpointError::Code::kIo);
  EXPECT_THAT(e.what(), AllOf(HasSubstr("fsync"), HasSubstr("Input/output error")));
  expect_previous_intact();
  expect_usable_again();
}

TEST_F(CheckpointFaultTest, ManifestFsyncFailure) {
  fs_->fail(Op::kSync, ending("MANIFEST.json.tmp"));
  EXPECT_THAT(failed_put().what(), HasSubstr("writing the manifest failed"));
  expect_previous_intact();
  expect_usable_again();
}

TEST_F(CheckpointFaultTest, FolderFsyncFailureAfterTheBlobRename) {
  fs_->fail(Op::kSyncDir, nth_call(1));
  EXPECT_THAT(failed_put().what(), HasSubstr("fsync of the folder " + tmp_.store()));
  expect_previous_intact();
  expect_usable_again();
}

TEST_F(CheckpointFaultTest, FolderFsyncFailureAfterTheManifestRename) {
  // The new manifest is already in place when its folder fsync fails: the
  // put is reported as failed, so its blob goes and the manifest on disk
  // names a missing file until the next write; a restart drops that entry.
  fs_->fail(Op::kSyncDir, nth_call(2));
  EXPECT_EQ(failed_put().code(), CheckpointError::Code::kIo);
  EXPECT_THAT(ids_of(store_->list("job")), ElementsAre(a_.id, b_.id));
  EXPECT_EQ(store_->read_verified(b_.id), blob_b_);
  CheckpointStore reopened(tmp_.store(), keep(1, 1));
  EXPECT_EQ(reopened.read_verified(a_.id), blob_a_);
  for (const auto& r : reopened.list_all()) EXPECT_NO_THROW(reopened.read_verified(r.id));
  expect_usable_again();
}

TEST_F(CheckpointFaultTest, BlobRenameFailure) {
  fs_->fail(Op::kRename, ending(".blob.tmp"), EXDEV);
  EXPECT_THAT(failed_put().what(), AllOf(HasSubstr("rename"), HasSubstr("cross-device")));
  expect_previous_intact();
  expect_usable_again();
}

TEST_F(CheckpointFaultTest, ManifestRenameFailure) {
  fs_->fail(Op::kRename, ending("MANIFEST.json.tmp"));
  EXPECT_THAT(failed_put().what(), HasSubstr("writing the manifest failed"));
  expect_previous_intact();
  expect_usable_again();
}

TEST_F(CheckpointFaultTest, FailedDeleteKeepsTheCheckpoint) {
  fs_->fail(Op::kRename, ending("MANIFEST.json.tmp"));
  try {
    store_->remove(b_.id);
    FAIL() << "remove succeeded despite the manifest rename failing";
  } catch (const CheckpointError& e) {
    EXPECT_EQ(e.code(), CheckpointError::Code::kIo);
    EXPECT_THAT(e.what(), HasSubstr(b_.id + " was not deleted"));
  }
  expect_previous_intact();
}

// ------------------------------------------------------------ crash points

struct CrashScenario {
  std::string name;
  // Builds the state before the interrupted operation.
  std::function<void(const std::string& dir, std::shared_ptr<Filesystem> fs)> setup;
  // The operation a crash interrupts.
  std::function<void(const std::string& dir, std::shared_ptr<Filesystem> fs)> action;
  // The checkpoint lists (id -> bytes) a restart may find: before or after.
  std::vector<std::map<std::string, std::string>> outcomes;
};

const std::string kBlobA = make_blob(1, 3000);
const std::string kBlobB = make_blob(2, 4000);
const std::string kBlobC = make_blob(3, 5000);

void setup_two(const std::string& dir, std::shared_ptr<Filesystem> fs) {
  CheckpointStore store(dir, keep(1, 1), std::move(fs));
  put(store, make_meta("job", 1, 0.5), kBlobA);  // ckpt-00000001, the best
  put(store, make_meta("job", 2, 0.7), kBlobB);  // ckpt-00000002, the last
}

std::vector<CrashScenario> scenarios() {
  const std::map<std::string, std::string> ab{{"ckpt-00000001", kBlobA}, {"ckpt-00000002", kBlobB}};
  std::vector<CrashScenario> list;
  // A put whose retention drops b: blob, manifest, then the deletion.
  list.push_back({"put",
                  setup_two,
                  [](const std::string& dir, std::shared_ptr<Filesystem> fs) {
                    CheckpointStore store(dir, keep(1, 1), std::move(fs));
                    put(store, make_meta("job", 3, 0.6, Direction::kMinimize, "u3"), kBlobC, 1024);
                  },
                  {ab, {{"ckpt-00000001", kBlobA}, {"ckpt-00000003", kBlobC}}}});
  list.push_back({"remove",
                  setup_two,
                  [](const std::string& dir, std::shared_ptr<Filesystem> fs) {
                    CheckpointStore store(dir, keep(1, 1), std::move(fs));
                    store.remove("ckpt-00000001");
                  },
                  {ab, {{"ckpt-00000002", kBlobB}}}});
  // Recovery with work to do: a stray temporary file, an unlisted blob and
  // a listed blob that is missing.
  list.push_back({"recovery",
                  [](const std::string& dir, std::shared_ptr<Filesystem> fs) {
                    setup_two(dir, fs);
                    fs->remove(dir + "/ckpt-00000002.blob");
                    auto tmp = fs->open_writable(dir + "/ckpt-00000005.blob.tmp",
                                                 Filesystem::OpenMode::kTruncate);
                    tmp->append("half");
                    tmp->sync();
                    tmp->close();
                    write_file_atomically(*fs, dir + "/ckpt-00000006.blob", "unlisted");
                  },
                  [](const std::string& dir, std::shared_ptr<Filesystem> fs) {
                    CheckpointStore store(dir, keep(1, 1), std::move(fs));
                  },
                  {{{"ckpt-00000001", kBlobA}}}});
  return list;
}

// Opens the folder after the crash with a plain store and checks that it
// holds exactly one of `allowed`, every checkpoint verifying, nothing stray.
void expect_recovered(const std::string& dir,
                      const std::vector<std::map<std::string, std::string>>& allowed,
                      const std::string& where) {
  std::unique_ptr<CheckpointStore> store;
  try {
    store = std::make_unique<CheckpointStore>(dir, keep(1, 1));
  } catch (const std::exception& e) {
    ADD_FAILURE() << where << ": the store does not open after the crash: " << e.what();
    return;
  }
  std::map<std::string, std::string> found;
  for (const auto& record : store->list_all()) {
    try {
      found[record.id] = store->read_verified(record.id);
    } catch (const CheckpointError& e) {
      ADD_FAILURE() << where << ": " << record.id << " does not verify: " << e.what();
    }
  }
  bool matches = false;
  for (const auto& outcome : allowed) matches = matches || found == outcome;
  std::string ids;
  for (const auto& [id, bytes] : found) ids += id + " ";
  EXPECT_TRUE(matches) << where << ": recovered [" << ids << "], not an allowed outcome";
  EXPECT_EQ(names_in(dir), expected_names(store->list_all())) << where;
  // And it takes the next put.
  EXPECT_NO_THROW(put(*store, make_meta("job", 9, 0.1), "next")) << where;
}

TEST(CheckpointCrashTest, EveryCrashPointLeavesALoadableVerifiedStore) {
  int crash_points = 0;
  for (const auto& scenario : scenarios()) {
    // Count the filesystem calls the operation makes when nothing fails.
    std::uint64_t calls = 0;
    {
      TempDir tmp;
      auto fs = std::make_shared<FaultInjectingFilesystem>(posix_filesystem());
      scenario.setup(tmp.store(), fs);
      const std::uint64_t before = fs->mutating_calls();
      scenario.action(tmp.store(), fs);
      calls = fs->mutating_calls() - before;
    }
    ASSERT_GT(calls, 0u) << scenario.name;
    // Crash at call 1 .. calls, and once after the operation returned
    // (calls + 1: a power cut right after success must keep the result).
    for (std::uint64_t at = 1; at <= calls + 1; ++at) {
      for (const bool drop_data : {true, false}) {
        for (const bool lose_names : {true, false}) {
          TempDir tmp;
          auto fs = std::make_shared<FaultInjectingFilesystem>(posix_filesystem());
          scenario.setup(tmp.store(), fs);
          std::string where = scenario.name + " crash at call " + std::to_string(at) + "/" +
                              std::to_string(calls) + (drop_data ? " dropping" : " keeping") +
                              " unsynced data," + (lose_names ? " losing" : " keeping") +
                              " unsynced names";
          if (at <= calls) {
            fs->crash_at(at);
            try {
              scenario.action(tmp.store(), fs);
            } catch (const std::exception&) {
              // The process "died" here; what it threw does not matter.
            }
            ASSERT_TRUE(fs->crashed()) << where << ": the crash point was not reached";
            where += " (" + fs->crash_point() + ")";
          } else {
            scenario.action(tmp.store(), fs);
          }
          fs->crash({drop_data, lose_names});
          if (at <= calls) {
            expect_recovered(tmp.store(), scenario.outcomes, where);
          } else {
            // The operation returned: its result must survive the power cut.
            expect_recovered(tmp.store(), {scenario.outcomes.back()}, where);
          }
          ++crash_points;
        }
      }
    }
    std::cout << "[ crash    ] " << scenario.name << ": " << calls
              << " filesystem calls, each crashed under 4 loss models, plus after success\n";
  }
  std::cout << "[ crash    ] " << crash_points << " crash points checked\n";
  ::testing::Test::RecordProperty("crash_points", crash_points);
  EXPECT_GT(crash_points, 40);
}

TEST(CheckpointCrashTest, CommittedPutSurvivesAPowerCut) {
  TempDir tmp;
  auto fs = std::make_shared<FaultInjectingFilesystem>(posix_filesystem());
  CheckpointRecord record;
  {
    CheckpointStore store(tmp.store(), keep(1, 2), fs);
    record = put(store, make_meta("job", 1, 0.5), kBlobA);
  }
  fs->crash({});
  CheckpointStore store(tmp.store(), keep(1, 2));
  EXPECT_EQ(store.read_verified(record.id), kBlobA);
}

}  // namespace
}  // namespace xfer::coordinator::checkpoint::testing
