// The filesystems durable writes go through (common/): the POSIX one, and
// the fault-injecting one whose crash model the crash tests of the checkpoint
// store and the metrics history rely on (if it did not really lose unsynced
// data, those tests would prove nothing).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cerrno>
#include <string>

#include "common/fault_injecting_filesystem.h"
#include "common/posix_filesystem.h"
#include "tests/unit/file_test_util.h"

namespace xfer::common {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;
using xfer::testing::names_in;
using xfer::testing::read_bytes;
using xfer::testing::TempDir;
using xfer::testing::write_bytes;
using Mode = Filesystem::OpenMode;

void write(Filesystem& fs, const std::string& path, const std::string& bytes, bool sync,
           Mode mode = Mode::kTruncate) {
  auto file = fs.open_writable(path, mode);
  file->append(bytes);
  if (sync) file->sync();
  file->close();
}

TEST(PosixFilesystemTest, WriteReadRenameListRemove) {
  TempDir tmp;
  PosixFilesystem fs;
  const std::string dir = tmp.path() + "/a/b/c";
  fs.create_dirs(dir);
  fs.create_dirs(dir);  // existing is fine
  write(fs, dir + "/x", "hello ", true);
  write(fs, dir + "/x", "world", true, Mode::kAppend);
  EXPECT_EQ(fs.read_file(dir + "/x"), "hello world");
  EXPECT_EQ(fs.read_range(dir + "/x", 6, 100), "world");
  EXPECT_EQ(fs.read_range(dir + "/x", 0, 5), "hello");
  EXPECT_EQ(fs.file_size(dir + "/x"), 11u);
  fs.rename(dir + "/x", dir + "/y");
  fs.sync_dir(dir);
  EXPECT_FALSE(fs.exists(dir + "/x"));
  EXPECT_TRUE(fs.exists(dir + "/y"));
  EXPECT_THAT(fs.list_dir(dir), ElementsAre("y"));
  fs.remove(dir + "/y");
  EXPECT_TRUE(fs.list_dir(dir).empty());
}

TEST(PosixFilesystemTest, ErrorsNameTheCallThePathAndTheErrno) {
  TempDir tmp;
  PosixFilesystem fs;
  const std::string missing = tmp.path() + "/missing";
  try {
    fs.read_file(missing);
    FAIL() << "read of a missing file succeeded";
  } catch (const FilesystemError& e) {
    EXPECT_EQ(e.error_number(), ENOENT);
    EXPECT_EQ(e.path(), missing);
    EXPECT_THAT(e.what(), AllOf(HasSubstr("open " + missing), HasSubstr("No such file"),
                                HasSubstr("errno 2")));
  }
  EXPECT_THROW(fs.remove(missing), FilesystemError);
  EXPECT_THROW(fs.rename(missing, missing + "2"), FilesystemError);
  EXPECT_THROW(fs.list_dir(missing), FilesystemError);
  write_bytes(tmp.path() + "/file", "x");
  EXPECT_THROW(fs.create_dirs(tmp.path() + "/file"), FilesystemError);
}

TEST(WriteFileAtomicallyTest, ReplacesAndLeavesNoTemporaryFile) {
  TempDir tmp;
  PosixFilesystem fs;
  const std::string path = tmp.path() + "/m";
  write_file_atomically(fs, path, "one");
  write_file_atomically(fs, path, "two");
  EXPECT_EQ(read_bytes(path), "two");
  EXPECT_THAT(names_in(tmp.path()), ElementsAre("m"));
}

class FaultInjectingFilesystemTest : public ::testing::Test {
 protected:
  TempDir tmp_;
  std::shared_ptr<Filesystem> base_ = posix_filesystem();
  FaultInjectingFilesystem fs_{base_};
  std::string dir_ = tmp_.path();
  std::string path(const std::string& name) const { return dir_ + "/" + name; }
};

TEST_F(FaultInjectingFilesystemTest, CrashDropsUnsyncedDataAndUnsyncedNames) {
  write(fs_, path("synced"), "durable", true);
  fs_.sync_dir(dir_);
  write(fs_, path("synced"), " and not", false, Mode::kAppend);  // data not synced
  write(fs_, path("new"), "never dir-synced", true);             // name not synced
  fs_.crash({});
  EXPECT_EQ(read_bytes(path("synced")), "durable");
  EXPECT_THAT(names_in(dir_), ElementsAre("synced"));
}

TEST_F(FaultInjectingFilesystemTest, CrashUndoesAnUnsyncedRenameAndRestoresTheReplacedFile) {
  write(fs_, path("target"), "old", true);
  write(fs_, path("target.tmp"), "new", true);
  fs_.sync_dir(dir_);
  fs_.rename(path("target.tmp"), path("target"));
  EXPECT_EQ(read_bytes(path("target")), "new");
  fs_.crash({});
  EXPECT_EQ(read_bytes(path("target")), "old");
  EXPECT_EQ(read_bytes(path("target.tmp")), "new");

  // Once the folder is synced the rename survives.
  fs_.rename(path("target.tmp"), path("target"));
  fs_.sync_dir(dir_);
  fs_.crash({});
  EXPECT_EQ(read_bytes(path("target")), "new");
  EXPECT_THAT(names_in(dir_), ElementsAre("target"));
}

TEST_F(FaultInjectingFilesystemTest, CrashUndoesAnUnsyncedRemove) {
  write(fs_, path("f"), "content", true);
  fs_.sync_dir(dir_);
  fs_.remove(path("f"));
  fs_.crash({});
  EXPECT_EQ(read_bytes(path("f")), "content");
}

TEST_F(FaultInjectingFilesystemTest, CrashCanKeepWhatTheKernelFlushedAnyway) {
  write(fs_, path("f"), "unsynced", false);
  fs_.crash({/*drop_unsynced_data=*/false, /*lose_unsynced_dir_ops=*/false});
  EXPECT_EQ(read_bytes(path("f")), "unsynced");
  write(fs_, path("g"), "unsynced", false);
  fs_.crash({/*drop_unsynced_data=*/true, /*lose_unsynced_dir_ops=*/false});
  EXPECT_EQ(read_bytes(path("g")), "");
}

TEST_F(FaultInjectingFilesystemTest, CrashPointStopsEveryLaterCallAndTearsTheAppend) {
  fs_.crash_at(3);  // open, append, *append*
  auto file = fs_.open_writable(path("f"), Mode::kTruncate);
  file->append("first ");
  EXPECT_THROW(file->append("0123456789"), SimulatedCrash);
  EXPECT_TRUE(fs_.crashed());
  EXPECT_THAT(fs_.crash_point(), HasSubstr("append 10 bytes to " + path("f")));
  EXPECT_THROW(file->sync(), SimulatedCrash);
  EXPECT_THROW(fs_.remove(path("f")), SimulatedCrash);
  EXPECT_THROW(fs_.read_file(path("f")), SimulatedCrash);
  EXPECT_EQ(read_bytes(path("f")), "first 01234");  // half of the torn append
  fs_.crash({/*drop_unsynced_data=*/false, /*lose_unsynced_dir_ops=*/false});
  EXPECT_FALSE(fs_.crashed());
  EXPECT_EQ(fs_.read_file(path("f")), "first 01234");
}

TEST_F(FaultInjectingFilesystemTest, InjectedFailuresChangeNothingAndNameThePath) {
  write(fs_, path("a"), "a", true);
  fs_.fail(FaultInjectingFilesystem::Op::kRename, [](const std::string&) { return true; });
  fs_.fail(FaultInjectingFilesystem::Op::kSync, [](const std::string&) { return true; });
  try {
    fs_.rename(path("a"), path("b"));
    FAIL() << "rename succeeded";
  } catch (const FilesystemError& e) {
    EXPECT_EQ(e.error_number(), EIO);
    EXPECT_THAT(e.what(), HasSubstr(path("a")));
  }
  EXPECT_THAT(names_in(dir_), ElementsAre("a"));
  auto file = fs_.open_writable(path("a"), Mode::kAppend);
  EXPECT_THROW(file->sync(), FilesystemError);
  fs_.clear_faults();
  EXPECT_NO_THROW(file->sync());
}

TEST_F(FaultInjectingFilesystemTest, FullDiskWritesWhatFitsThenEnospc) {
  fs_.set_free_space(4);
  auto file = fs_.open_writable(path("f"), Mode::kTruncate);
  file->append("ab");
  try {
    file->append("cdef");
    FAIL() << "append past the free space succeeded";
  } catch (const FilesystemError& e) {
    EXPECT_EQ(e.error_number(), ENOSPC);
    EXPECT_THAT(e.what(), AllOf(HasSubstr(path("f")), HasSubstr("No space left on device")));
  }
  EXPECT_EQ(read_bytes(path("f")), "abcd");
}

TEST_F(FaultInjectingFilesystemTest, TornWriteKeepsAPrefixAndFails) {
  fs_.tear_writes([](const std::string& p) { return p.find("torn") != std::string::npos; }, 3);
  auto file = fs_.open_writable(path("torn"), Mode::kTruncate);
  EXPECT_THROW(file->append("abcdef"), FilesystemError);
  EXPECT_EQ(read_bytes(path("torn")), "abc");
  write(fs_, path("whole"), "abcdef", false);
  EXPECT_EQ(read_bytes(path("whole")), "abcdef");
}

}  // namespace
}  // namespace xfer::common
