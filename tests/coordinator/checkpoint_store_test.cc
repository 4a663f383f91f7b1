// CheckpointStore on the real filesystem: round trip, chunk order, ranking,
// retention, idempotent uploads, restart recovery and corruption.
#include "coordinator/checkpoint/checkpoint_store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <thread>

#include "common/sha256.h"
#include "coordinator/checkpoint/retention.h"
#include "tests/coordinator/checkpoint_test_util.h"

namespace xfer::coordinator::checkpoint::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;
using ::testing::UnorderedElementsAreArray;

// SHA-256("abc") from FIPS 180-2, appendix B.1.
constexpr char kAbcDigest[] = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

StoreOptions keep(int best, int last) {
  StoreOptions options;
  options.keep_best = best;
  options.keep_last = last;
  return options;
}

// Runs `call`, expects a CheckpointError with `code`, returns its message.
template <typename Call>
std::string error_of(Call call, CheckpointError::Code code) {
  try {
    call();
  } catch (const CheckpointError& e) {
    EXPECT_EQ(to_string(e.code()), std::string(to_string(code))) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "expected a CheckpointError " << to_string(code) << ", nothing was thrown";
  return "";
}

TEST(CheckpointStoreTest, RoundTripRecordsKnownSha256) {
  TempDir tmp;
  CheckpointStore store(tmp.store(), keep(5, 5));
  auto writer = store.begin_put(make_meta("job", 1, 0.5));
  writer->append(0, "a");
  writer->append(1, "");
  writer->append(1, "bc");
  const CheckpointRecord record = writer->commit();
  EXPECT_EQ(record.sha256_hex, kAbcDigest);
  EXPECT_EQ(record.size_bytes, 3);
  EXPECT_EQ(record.meta.run, "job");
  EXPECT_EQ(record.meta.metric_name, "val_loss");
  EXPECT_GT(record.created_unix_ms, 0);
  EXPECT_EQ(store.read_verified(record.id), "abc");
  // Stored as the raw bytes, beside the manifest.
  EXPECT_EQ(read_bytes(tmp.store() + "/" + record.id + ".blob"), "abc");
  EXPECT_EQ(names_in(tmp.store()), expected_names({record}));
  const auto found = store.find(record.id);
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->sha256_hex, kAbcDigest);
  EXPECT_EQ(common::sha256_hex(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(CheckpointStoreTest, ChunksOutOfOrderWithGapsOrTooLargeAreRefused) {
  TempDir tmp;
  StoreOptions options = keep(5, 5);
  options.max_blob_bytes = 10;
  CheckpointStore store(tmp.store(), options);
  const auto c = CheckpointError::Code::kInvalidArgument;

  auto gap = store.begin_put(make_meta("job", 1, 0.5));
  gap->append(0, "abc");
  EXPECT_THAT(error_of([&] { gap->append(4, "d"); }, c),
              AllOf(HasSubstr("offset 4"), HasSubstr("expected offset 3")));
  // The upload is aborted: later calls fail, its temporary file is gone.
  EXPECT_THAT(error_of([&] { gap->commit(); }, c), HasSubstr("already aborted"));

  auto overlap = store.begin_put(make_meta("job", 1, 0.5));
  overlap->append(0, "abc");
  EXPECT_THAT(error_of([&] { overlap->append(2, "cd"); }, c), HasSubstr("expected offset 3"));

  auto first_not_zero = store.begin_put(make_meta("job", 1, 0.5));
  EXPECT_THAT(error_of([&] { first_not_zero->append(5, "x"); }, c), HasSubstr("expected offset 0"));

  auto too_big = store.begin_put(make_meta("job", 1, 0.5));
  too_big->append(0, "0123456789");
  EXPECT_THAT(error_of([&] { too_big->append(10, "x"); }, c),
              AllOf(HasSubstr("limit of 10 bytes"), HasSubstr("offset 10")));

  auto empty = store.begin_put(make_meta("job", 1, 0.5));
  EXPECT_THAT(error_of([&] { empty->commit(); }, c), HasSubstr("no bytes"));

  EXPECT_TRUE(store.list("job").empty());
  EXPECT_EQ(names_in(tmp.store()), expected_names({}));
}

TEST(CheckpointStoreTest, BadMetaIsRefused) {
  TempDir tmp;
  CheckpointStore store(tmp.store(), keep(1, 1));
  const auto c = CheckpointError::Code::kInvalidArgument;
  EXPECT_THAT(error_of([&] { store.begin_put(make_meta("", 1, 0.5)); }, c),
              HasSubstr("run name is empty"));
  EXPECT_THAT(error_of([&] { store.begin_put(make_meta("job", -1, 0.5)); }, c),
              HasSubstr("expected both >= 0"));
  CheckpointMeta no_metric = make_meta("job", 1, 0.5);
  no_metric.metric_name.clear();
  EXPECT_THAT(error_of([&] { store.begin_put(no_metric); }, c), HasSubstr("metric name is empty"));
  // A run keeps one metric and direction, or "best" means nothing.
  put(store, make_meta("job", 1, 0.5), "x");
  EXPECT_THAT(error_of([&] { store.begin_put(make_meta("job", 2, 0.9, Direction::kMaximize)); }, c),
              AllOf(HasSubstr("val_top1 (maximize)"), HasSubstr("val_loss (minimize)")));
  EXPECT_NO_THROW(store.begin_put(make_meta("other", 2, 0.9, Direction::kMaximize)));
}

TEST(CheckpointStoreTest, ListBestLatest) {
  TempDir tmp;
  CheckpointStore store(tmp.store(), keep(10, 10));
  EXPECT_FALSE(store.best("job").has_value());
  EXPECT_FALSE(store.latest("job").has_value());
  const auto e3 = put(store, make_meta("job", 3, 0.40), "e3");
  const auto e1 = put(store, make_meta("job", 1, 0.90), "e1");
  const auto e2 = put(store, make_meta("job", 2, 0.30), "e2");
  const auto e2_again = put(store, make_meta("job", 2, 0.30), "e2 again");  // same (epoch, step)
  const auto nan = put(store, make_meta("job", 4, std::nan("")), "nan");
  const auto other = put(store, make_meta("other", 9, 0.01), "other");

  EXPECT_THAT(ids_of(store.list("job")), ElementsAre(e1.id, e2.id, e2_again.id, e3.id, nan.id));
  EXPECT_THAT(ids_of(store.list("other")), ElementsAre(other.id));
  EXPECT_TRUE(store.list("ghost").empty());
  EXPECT_EQ(store.list_all().size(), 6u);
  // Lowest loss; the tie goes to the first to reach it (Keras' save_best_only).
  EXPECT_EQ(store.best("job")->id, e2.id);
  // Highest (epoch, step), NaN metric or not.
  EXPECT_EQ(store.latest("job")->id, nan.id);
  EXPECT_EQ(store.best("other")->id, other.id);
}

TEST(CheckpointStoreTest, ListInBestOrLatestOrderAgreesWithBestAndLatest) {
  TempDir tmp;
  CheckpointStore store(tmp.store(), keep(10, 10));
  const auto nan = put(store, make_meta("job", 5, std::nan("")), "nan");
  const auto e3 = put(store, make_meta("job", 3, 0.40), "e3");
  const auto e1 = put(store, make_meta("job", 1, 0.30), "e1");
  const auto e2 = put(store, make_meta("job", 2, 0.30), "e2");              // ties e1's metric
  const auto e2_again = put(store, make_meta("job", 2, 0.10), "e2 again");  // ties e2's step
  const auto nan2 = put(store, make_meta("job", 0, std::nan("")), "nan 2");
  put(store, make_meta("other", 9, 0.01), "other");

  // NaN after every number, in commit order; a tie of metrics: the earlier
  // commit first.
  const auto best = store.list("job", ListOrder::kBestFirst);
  EXPECT_THAT(ids_of(best), ElementsAre(e2_again.id, e1.id, e2.id, e3.id, nan.id, nan2.id));
  EXPECT_EQ(best.front().id, store.best("job")->id);
  // Highest (epoch, step) first; a tie: the later commit first.
  const auto latest = store.list("job", ListOrder::kLatestFirst);
  EXPECT_THAT(ids_of(latest), ElementsAre(nan.id, e3.id, e2_again.id, e2.id, e1.id, nan2.id));
  EXPECT_EQ(latest.front().id, store.latest("job")->id);
  EXPECT_THAT(ids_of(store.list("job", ListOrder::kEarliestFirst)),
              ElementsAre(nan2.id, e1.id, e2.id, e2_again.id, e3.id, nan.id));

  // Maximizing turns the numbers around, not NaN.
  const auto up1 = put(store, make_meta("up", 1, 0.5, Direction::kMaximize), "u1");
  const auto up_nan = put(store, make_meta("up", 2, std::nan(""), Direction::kMaximize), "un");
  const auto up3 = put(store, make_meta("up", 3, 0.7, Direction::kMaximize), "u3");
  EXPECT_THAT(ids_of(store.list("up", ListOrder::kBestFirst)),
              ElementsAre(up3.id, up1.id, up_nan.id));
  EXPECT_TRUE(store.list("ghost", ListOrder::kBestFirst).empty());
}

CheckpointMeta phase_meta(const std::string& phase, std::int64_t epoch, double metric) {
  CheckpointMeta meta = make_meta("job", epoch, metric);
  meta.phase = phase;
  return meta;
}

TEST(CheckpointStoreTest, BestAndLatestOfOnePhase) {
  TempDir tmp;
  CheckpointStore store(tmp.store(), keep(10, 10));
  const auto h1 = put(store, phase_meta("head", 1, 2.0), "h1");
  const auto h2 = put(store, phase_meta("head", 2, 1.5), "h2");
  const auto f3 = put(store, phase_meta("finetune", 3, 1.0), "f3");
  const auto f4 = put(store, phase_meta("finetune", 4, 1.2), "f4");
  EXPECT_EQ(store.best("job")->id, f3.id);
  EXPECT_EQ(store.best("job", "")->id, f3.id);  // empty: any phase
  EXPECT_EQ(store.best("job", "head")->id, h2.id);
  EXPECT_EQ(store.best("job", "finetune")->id, f3.id);
  EXPECT_EQ(store.latest("job")->id, f4.id);
  EXPECT_EQ(store.latest("job", "head")->id, h2.id);
  EXPECT_EQ(store.latest("job", "finetune")->id, f4.id);
  EXPECT_THAT(ids_of(store.list("job", ListOrder::kBestFirst, "head")), ElementsAre(h2.id, h1.id));
  EXPECT_THAT(ids_of(store.list("job", ListOrder::kLatestFirst, "finetune")),
              ElementsAre(f4.id, f3.id));
  EXPECT_TRUE(store.list("job", ListOrder::kBestFirst, "full").empty());
  EXPECT_FALSE(store.best("job", "full").has_value());
  EXPECT_FALSE(store.latest("job", "full").has_value());
  EXPECT_FALSE(store.best("ghost", "head").has_value());
}

TEST(CheckpointStoreTest, RetentionKeepsTheBestOfEachPhaseAcrossARestart) {
  TempDir tmp;
  std::string best_head;
  {
    CheckpointStore store(tmp.store(), keep(1, 1));
    put(store, phase_meta("head", 1, 2.0), "h1");
    best_head = put(store, phase_meta("head", 2, 1.5), "h2").id;
    put(store, phase_meta("head", 3, 1.7), "h3");
    const auto f4 = put(store, phase_meta("finetune", 4, 1.0), "f4");  // better than any head
    put(store, phase_meta("finetune", 5, 1.1), "f5");
    const auto f6 = put(store, phase_meta("finetune", 6, 1.2), "f6");
    // Best head (h2), best finetune (f4), last (f6).
    EXPECT_THAT(ids_of(store.list("job")), ElementsAre(best_head, f4.id, f6.id));
  }
  CheckpointStore reopened(tmp.store(), keep(1, 1));
  EXPECT_EQ(reopened.best("job", "head")->id, best_head);
  EXPECT_EQ(reopened.read_verified(best_head), "h2");
}

TEST(CheckpointStoreTest, LatestTieGoesToTheNewestCommit) {
  TempDir tmp;
  CheckpointStore store(tmp.store(), keep(10, 10));
  put(store, make_meta("job", 5, 0.5), "first");
  const auto second = put(store, make_meta("job", 5, 0.5), "second");
  EXPECT_EQ(store.latest("job")->id, second.id);
}

TEST(CheckpointStoreTest, RetentionKeepsBestAndLastWhenMinimizing) {
  TempDir tmp;
  CheckpointStore store(tmp.store(), keep(1, 2));
  const auto e1 = put(store, make_meta("job", 1, 0.9), "e1");
  const auto e2 = put(store, make_meta("job", 2, 0.2), "e2");  // the best
  const auto e3 = put(store, make_meta("job", 3, 0.5), "e3");
  EXPECT_THAT(ids_of(store.list("job")), ElementsAre(e2.id, e3.id));  // e1: neither
  const auto e4 = put(store, make_meta("job", 4, 0.6), "e4");
  EXPECT_THAT(ids_of(store.list("job")), ElementsAre(e2.id, e3.id, e4.id));
  const auto e5 = put(store, make_meta("job", 5, 0.1), "e5");  // new best
  EXPECT_THAT(ids_of(store.list("job")), ElementsAre(e4.id, e5.id));
  // Deleted from disk too, and nothing else left behind.
  EXPECT_EQ(names_in(tmp.store()), expected_names({e4, e5}));
  EXPECT_THAT(error_of([&] { store.read_verified(e1.id); }, CheckpointError::Code::kNotFound),
              HasSubstr(e1.id));
}

TEST(CheckpointStoreTest, RetentionKeepsBestAndLastWhenMaximizing) {
  TempDir tmp;
  CheckpointStore store(tmp.store(), keep(2, 1));
  const auto d = Direction::kMaximize;
  const auto e1 = put(store, make_meta("job", 1, 0.30, d), "e1");
  const auto e2 = put(store, make_meta("job", 2, 0.80, d), "e2");
  const auto e3 = put(store, make_meta("job", 3, 0.50, d), "e3");
  const auto e4 = put(store, make_meta("job", 4, 0.40, d), "e4");
  // Best two by top-1 (higher is better): e2, e3; last one: e4.
  EXPECT_THAT(ids_of(store.list("job")), ElementsAre(e2.id, e3.id, e4.id));
  EXPECT_EQ(store.best("job")->id, e2.id);
  const auto e5 = put(store, make_meta("job", 5, 0.90, d), "e5");
  EXPECT_THAT(ids_of(store.list("job")), ElementsAre(e2.id, e5.id));
  EXPECT_EQ(names_in(tmp.store()), expected_names({e2, e5}));
  (void)e1;
}

TEST(CheckpointStoreTest, RetentionIsPerRunAndNeverDropsTheNewCheckpoint) {
  TempDir tmp;
  CheckpointStore store(tmp.store(), keep(1, 1));
  const auto a5 = put(store, make_meta("a", 5, 0.1), "a5");
  const auto b1 = put(store, make_meta("b", 1, 0.9), "b1");
  // Neither the best nor the last of run a, yet just committed: kept.
  const auto a2 = put(store, make_meta("a", 2, 0.5), "a2");
  EXPECT_THAT(ids_of(store.list("a")), ElementsAre(a2.id, a5.id));
  EXPECT_THAT(ids_of(store.list("b")), ElementsAre(b1.id));
  // The next commit drops it.
  const auto a6 = put(store, make_meta("a", 6, 0.7), "a6");
  EXPECT_THAT(ids_of(store.list("a")), ElementsAre(a5.id, a6.id));
}

TEST(CheckpointStoreTest, KeepBestZeroKeepsOnlyTheLast) {
  TempDir tmp;
  CheckpointStore store(tmp.store(), keep(0, 1));
  put(store, make_meta("job", 1, 0.1), "e1");
  const auto e2 = put(store, make_meta("job", 2, 0.9), "e2");
  EXPECT_THAT(ids_of(store.list("job")), ElementsAre(e2.id));
}

TEST(CheckpointStoreTest, OptionsThatKeepNothingAreRefused) {
  TempDir tmp;
  EXPECT_THROW(CheckpointStore(tmp.store(), keep(0, 0)), std::invalid_argument);
  EXPECT_THROW(CheckpointStore(tmp.store(), keep(-1, 2)), std::invalid_argument);
}

TEST(CheckpointStoreTest, RetriedUploadLandsOnce) {
  TempDir tmp;
  CheckpointStore store(tmp.store(), keep(5, 5));
  const std::string blob = make_blob(1, 5000);
  const auto first = put(store, make_meta("job", 1, 0.5, Direction::kMinimize, "up-1"), blob);
  const auto again = put(store, make_meta("job", 1, 0.5, Direction::kMinimize, "up-1"), blob, 700);
  EXPECT_EQ(again.id, first.id);
  EXPECT_EQ(again.sha256_hex, first.sha256_hex);
  EXPECT_EQ(store.list("job").size(), 1u);
  EXPECT_EQ(names_in(tmp.store()), expected_names({first}));
  // Survives a restart: the upload id is in the manifest.
  CheckpointStore reopened(tmp.store(), keep(5, 5));
  EXPECT_EQ(put(reopened, make_meta("job", 1, 0.5, Direction::kMinimize, "up-1"), blob).id,
            first.id);
  // The same upload id with other bytes is a client bug, not a retry.
  EXPECT_THAT(
      error_of([&] { put(reopened, make_meta("job", 1, 0.5, Direction::kMinimize, "up-1"), "x"); },
               CheckpointError::Code::kInvalidArgument),
      AllOf(HasSubstr("up-1"), HasSubstr(first.sha256_hex), HasSubstr(common::sha256_hex("x"))));
  // No upload id: two copies are two checkpoints.
  put(reopened, make_meta("job", 1, 0.5), blob);
  EXPECT_EQ(reopened.list("job").size(), 2u);
  EXPECT_EQ(names_in(tmp.store()).size(), 3u);
}

TEST(CheckpointStoreTest, ConcurrentRetriesOfOneUploadLandOnce) {
  TempDir tmp;
  CheckpointStore store(tmp.store(), keep(5, 5));
  const std::string blob = make_blob(2, 3000);
  const auto meta = make_meta("job", 1, 0.5, Direction::kMinimize, "up-2");
  auto w1 = store.begin_put(meta);
  auto w2 = store.begin_put(meta);  // the client retried before the first finished
  w1->append(0, blob);
  w2->append(0, blob);
  const auto r2 = w2->commit();
  const auto r1 = w1->commit();
  EXPECT_EQ(r1.id, r2.id);
  EXPECT_EQ(names_in(tmp.store()), expected_names({r2}));
}

TEST(CheckpointStoreTest, AbortAndAbandonedWritersLeaveNothing) {
  TempDir tmp;
  CheckpointStore store(tmp.store(), keep(5, 5));
  {
    auto writer = store.begin_put(make_meta("job", 1, 0.5));
    writer->append(0, "partial");
    EXPECT_EQ(names_in(tmp.store()).size(), 2u);  // manifest + the temporary file
    writer->abort();
    writer->abort();  // idempotent
  }
  {
    auto writer = store.begin_put(make_meta("job", 1, 0.5));
    writer->append(0, "partial");
  }  // destroyed without commit, as when a client stream breaks
  EXPECT_EQ(names_in(tmp.store()), expected_names({}));
  EXPECT_TRUE(store.list("job").empty());
}

TEST(CheckpointStoreTest, RemoveAndUnknownIds) {
  TempDir tmp;
  CheckpointStore store(tmp.store(), keep(5, 5));
  const auto a = put(store, make_meta("job", 1, 0.5), "a");
  const auto b = put(store, make_meta("job", 2, 0.4), "b");
  store.remove(a.id);
  EXPECT_THAT(ids_of(store.list("job")), ElementsAre(b.id));
  EXPECT_EQ(names_in(tmp.store()), expected_names({b}));
  const auto nf = CheckpointError::Code::kNotFound;
  EXPECT_THAT(error_of([&] { store.remove(a.id); }, nf), HasSubstr(a.id));
  EXPECT_THAT(error_of([&] { store.read_verified("ckpt-99999999"); }, nf),
              HasSubstr("ckpt-99999999"));
  EXPECT_THAT(error_of([&] { store.read_verified("../MANIFEST.json"); }, nf),
              HasSubstr("../MANIFEST.json"));
  EXPECT_FALSE(store.find("nope").has_value());
  // Removed ids are not reused, even after a restart.
  CheckpointStore reopened(tmp.store(), keep(5, 5));
  const auto c = put(reopened, make_meta("job", 3, 0.3), "c");
  EXPECT_NE(c.id, a.id);
  EXPECT_NE(c.id, b.id);
}

TEST(CheckpointStoreTest, RestartReloadsTheManifest) {
  TempDir tmp;
  std::vector<CheckpointRecord> stored;
  {
    CheckpointStore store(tmp.store(), keep(5, 5));
    stored.push_back(put(store, make_meta("a", 1, 0.5, Direction::kMinimize, "u1"), "one"));
    stored.push_back(put(store, make_meta("b", 2, std::nan(""), Direction::kMaximize), "two"));
    stored.push_back(
        put(store, make_meta("b", 3, std::numeric_limits<double>::infinity(), Direction::kMaximize),
            make_blob(3, 10000)));
  }
  CheckpointStore store(tmp.store(), keep(5, 5));
  ASSERT_EQ(store.list_all().size(), 3u);
  for (const auto& expected : stored) {
    const auto found = store.find(expected.id);
    ASSERT_TRUE(found.has_value()) << expected.id;
    EXPECT_EQ(found->sha256_hex, expected.sha256_hex);
    EXPECT_EQ(found->size_bytes, expected.size_bytes);
    EXPECT_EQ(found->created_unix_ms, expected.created_unix_ms);
    EXPECT_EQ(found->meta.run, expected.meta.run);
    EXPECT_EQ(found->meta.phase, expected.meta.phase);
    EXPECT_EQ(found->meta.epoch, expected.meta.epoch);
    EXPECT_EQ(found->meta.step, expected.meta.step);
    EXPECT_EQ(found->meta.direction, expected.meta.direction);
    EXPECT_EQ(found->meta.upload_id, expected.meta.upload_id);
    if (std::isnan(expected.meta.metric_value)) {
      EXPECT_TRUE(std::isnan(found->meta.metric_value));
    } else {
      EXPECT_EQ(found->meta.metric_value, expected.meta.metric_value);
    }
    EXPECT_EQ(common::sha256_hex(store.read_verified(expected.id)), expected.sha256_hex);
  }
  EXPECT_EQ(store.best("b")->id, stored[2].id);
}

TEST(CheckpointStoreTest, RestartRemovesStrayFilesAndDropsEntriesWithoutBlob) {
  TempDir tmp;
  CheckpointRecord kept, lost;
  {
    CheckpointStore store(tmp.store(), keep(5, 5));
    kept = put(store, make_meta("job", 1, 0.5), "kept");
    lost = put(store, make_meta("job", 2, 0.4), "lost");
  }
  std::filesystem::remove(tmp.store() + "/" + lost.id + ".blob");
  write_bytes(tmp.store() + "/ckpt-00000077.blob.tmp", "half a blob");
  write_bytes(tmp.store() + "/MANIFEST.json.tmp", "{\"half\": ");
  write_bytes(tmp.store() + "/ckpt-00000078.blob", "written before a crash, never listed");
  write_bytes(tmp.store() + "/README", "not ours: left alone");

  CheckpointStore store(tmp.store(), keep(5, 5));
  EXPECT_THAT(ids_of(store.list("job")), ElementsAre(kept.id));
  EXPECT_EQ(store.read_verified(kept.id), "kept");
  EXPECT_THAT(names_in(tmp.store()),
              UnorderedElementsAre("MANIFEST.json", kept.id + ".blob", "README"));
  // The dropped entry is gone from the manifest on disk too.
  CheckpointStore again(tmp.store(), keep(5, 5));
  EXPECT_THAT(ids_of(again.list("job")), ElementsAre(kept.id));
  // Ids continue after every id a manifest ever listed (orphans never
  // reached a client, so their numbers may come back).
  EXPECT_EQ(put(again, make_meta("job", 3, 0.3), "new").id, "ckpt-00000003");
}

TEST(CheckpointStoreTest, DamagedOrMissingManifestRefusesToStartAndDeletesNothing) {
  TempDir tmp;
  CheckpointRecord record;
  {
    CheckpointStore store(tmp.store(), keep(5, 5));
    record = put(store, make_meta("job", 1, 0.5), "payload");
  }
  const std::string manifest = tmp.store() + "/MANIFEST.json";
  const std::string good = read_bytes(manifest);
  const auto before = names_in(tmp.store());
  const auto dl = CheckpointError::Code::kDataLoss;

  write_bytes(manifest, good.substr(0, good.size() / 2));
  EXPECT_THAT(error_of([&] { CheckpointStore s(tmp.store(), keep(5, 5)); }, dl),
              AllOf(HasSubstr(manifest), HasSubstr("not valid JSON")));

  // Still valid JSON, but a digit of the size changed: the list digest catches it.
  std::string edited = good;
  const auto at = edited.find("\"size_bytes\": 7");
  ASSERT_NE(at, std::string::npos) << good;
  edited.replace(at, 15, "\"size_bytes\": 8");
  write_bytes(manifest, edited);
  EXPECT_THAT(error_of([&] { CheckpointStore s(tmp.store(), keep(5, 5)); }, dl),
              HasSubstr("SHA-256"));

  std::filesystem::remove(manifest);
  EXPECT_THAT(error_of([&] { CheckpointStore s(tmp.store(), keep(5, 5)); }, dl),
              AllOf(HasSubstr("1 checkpoint file(s)"), HasSubstr("no MANIFEST.json")));
  EXPECT_EQ(read_bytes(tmp.store() + "/" + record.id + ".blob"), "payload");

  write_bytes(manifest, good);
  CheckpointStore store(tmp.store(), keep(5, 5));
  EXPECT_EQ(store.read_verified(record.id), "payload");
  EXPECT_EQ(names_in(tmp.store()), before);
}

TEST(CheckpointStoreTest, FlippedByteIsDataLossAndNothingIsServed) {
  TempDir tmp;
  CheckpointStore store(tmp.store(), keep(5, 5));
  const std::string blob = make_blob(4, 20000);
  const auto record = put(store, make_meta("job", 1, 0.5), blob);
  const std::string path = tmp.store() + "/" + record.id + ".blob";
  std::string damaged = blob;
  damaged[12345] = static_cast<char>(damaged[12345] ^ 0x01);
  write_bytes(path, damaged);

  std::string served = "untouched";
  const std::string message =
      error_of([&] { served = store.read_verified(record.id); }, CheckpointError::Code::kDataLoss);
  EXPECT_EQ(served, "untouched");
  EXPECT_THAT(message, AllOf(HasSubstr(record.id), HasSubstr(record.sha256_hex),
                             HasSubstr(common::sha256_hex(damaged)), HasSubstr(path)));
  // Still listed (an operator decides), still refused after a restart.
  CheckpointStore reopened(tmp.store(), keep(5, 5));
  EXPECT_TRUE(reopened.find(record.id).has_value());
  error_of([&] { reopened.read_verified(record.id); }, CheckpointError::Code::kDataLoss);

  // Truncated, and then missing altogether.
  write_bytes(path, blob.substr(0, 100));
  EXPECT_THAT(
      error_of([&] { reopened.read_verified(record.id); }, CheckpointError::Code::kDataLoss),
      AllOf(HasSubstr("100 bytes"), HasSubstr("20000 bytes")));
  std::filesystem::remove(path);
  EXPECT_THAT(
      error_of([&] { reopened.read_verified(record.id); }, CheckpointError::Code::kDataLoss),
      HasSubstr("missing"));
}

TEST(CheckpointStoreTest, ConcurrentPutsAndReads) {
  TempDir tmp;
  CheckpointStore store(tmp.store(), keep(100, 100));
  constexpr int kThreads = 4;
  constexpr int kPerThread = 8;
  std::vector<std::thread> threads;
  std::vector<std::vector<CheckpointRecord>> results(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        const int seed = t * kPerThread + i;
        const std::string blob = make_blob(seed, 3000 + static_cast<std::size_t>(seed));
        results[t].push_back(
            put(store, make_meta("run-" + std::to_string(t % 2), seed, seed * 0.1), blob, 512));
        EXPECT_EQ(store.read_verified(results[t].back().id), blob);
        store.list("run-0");
        store.best("run-1");
      }
    });
  }
  for (auto& thread : threads) thread.join();
  std::vector<std::string> all;
  for (const auto& records : results) {
    for (const auto& r : records) all.push_back(r.id);
  }
  EXPECT_THAT(ids_of(store.list_all()), UnorderedElementsAreArray(all));
  CheckpointStore reopened(tmp.store(), keep(100, 100));
  EXPECT_EQ(reopened.list_all().size(), static_cast<std::size_t>(kThreads * kPerThread));
}

TEST(RetentionTest, NanRanksLastEitherWay) {
  CheckpointRecord number, nan;
  number.id = "n";
  number.sequence = 2;
  number.meta.metric_value = 1e9;
  nan.id = "x";
  nan.sequence = 1;
  nan.meta.metric_value = std::nan("");
  for (const auto d : {Direction::kMinimize, Direction::kMaximize}) {
    number.meta.direction = nan.meta.direction = d;
    EXPECT_TRUE(ranks_better(number, nan));
    EXPECT_FALSE(ranks_better(nan, number));
    EXPECT_THAT(retained_ids({number, nan}, 1, 0, "n"), UnorderedElementsAre("n"));
  }
}

CheckpointRecord phase_record(const std::string& id, const std::string& phase, std::int64_t epoch,
                              double value) {
  CheckpointRecord r;
  r.id = id;
  r.meta = make_meta("job", epoch, value);
  r.meta.phase = phase;
  r.sequence = epoch;
  return r;
}

TEST(RetentionTest, KeepsTheBestOfEachPhasePlusTheLastOverall) {
  // Fine-tuning beats every head checkpoint, yet the best head one stays:
  // the job restores it before it fine-tunes.
  const std::vector<CheckpointRecord> records{
      phase_record("h1", "head", 1, 2.0),     phase_record("h2", "head", 2, 1.5),
      phase_record("h3", "head", 3, 1.7),     phase_record("f4", "finetune", 4, 1.0),
      phase_record("f5", "finetune", 5, 1.1), phase_record("f6", "finetune", 6, 1.2)};
  EXPECT_THAT(retained_ids(records, 1, 1, "f6"), UnorderedElementsAre("h2", "f4", "f6"));
  EXPECT_THAT(retained_ids(records, 2, 0, "f6"),
              UnorderedElementsAre("h2", "h3", "f4", "f5", "f6"));
  // The last keep_last are counted over all phases, not per phase.
  EXPECT_THAT(retained_ids(records, 0, 2, "f6"), UnorderedElementsAre("f5", "f6"));
  // One phase only: as before phases existed.
  const std::vector<CheckpointRecord> head{records[0], records[1], records[2]};
  EXPECT_THAT(retained_ids(head, 1, 1, "h3"), UnorderedElementsAre("h2", "h3"));
}

TEST(RetentionTest, AnEmptyPhaseIsAPhaseOfItsOwn) {
  const std::vector<CheckpointRecord> records{phase_record("a", "", 1, 0.5),
                                              phase_record("b", "head", 2, 0.9),
                                              phase_record("c", "head", 3, 0.95)};
  EXPECT_THAT(retained_ids(records, 1, 0, "c"), UnorderedElementsAre("a", "b", "c"));
}

}  // namespace
}  // namespace xfer::coordinator::checkpoint::testing
