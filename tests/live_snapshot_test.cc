// New data without a restart, across real processes (issue 16, item 1):
// `passerelle node load` into the store of a serving node under a stream of
// queries. No query fails, every answer is the old snapshot's or the new
// one's and once the new one is seen the old never returns, a repeat after
// the switch is a fresh, charged answer, the old snapshot's files are
// removed, and snapshots that are another site's, damaged or truncated are
// refused while the old one keeps serving (SERVING throughout). Every wait
// is on observable state (GetInfo, metrics, files) with a deadline.
#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "passerelle/v1/metrics.grpc.pb.h"
#include "passerelle/v1/node.grpc.pb.h"
#include "query/parser.h"
#include "tests/fault_harness.h"
#include "tests/federation.h"
#include "tests/process.h"

namespace passerelle::testing {
namespace {

namespace fs = std::filesystem;

constexpr char kCheckQuery[] = "condition icd10:E11* group by sex";
constexpr absl::Duration kWait = absl::Seconds(60);

// Polls `done` until it holds or `deadline` passes.
template <typename F>
bool WaitUntil(F done, absl::Duration deadline = kWait) {
  const absl::Time until = absl::Now() + deadline;
  while (absl::Now() < until) {
    if (done()) return true;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return done();
}

// One answer of the stream: which snapshot answered fr, and its counts
// (-1: a cell the gateway suppressed).
struct Answer {
  std::string snapshot;
  std::vector<int64_t> counts;
  std::string via;  // "node" or "gateway".
};

// Every count the answer released is the snapshot's (the gateway's exact
// mode suppresses small cells), and most are released.
::testing::AssertionResult SameCounts(const Answer& a,
                                      const std::vector<int64_t>& want) {
  if (a.counts.size() != want.size()) {
    return ::testing::AssertionFailure() << "cells: " << a.counts.size();
  }
  int released = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    if (a.counts[i] == -1 && a.via == "gateway") continue;
    ++released;
    if (a.counts[i] != want[i]) {
      return ::testing::AssertionFailure()
             << "cell " << i << ": " << a.counts[i] << ", want " << want[i];
    }
  }
  if (released < 2) return ::testing::AssertionFailure() << "too few cells";
  return ::testing::AssertionSuccess();
}

class LiveSnapshotTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::make_unique<TempDir>();
    fed_ = std::make_unique<Federation>(dir_->path());
    ASSERT_TRUE(fed_->MintPki().ok());
    // Three versions of fr's data and qc's.
    for (int i = 0; i < 3; ++i) {
      data_[i] = fed_->Path(absl::StrCat("data/fr", i));
      ASSERT_TRUE(Generate("fr", 400 + 100 * i, 21 + 10 * i, data_[i]).ok());
    }
    ASSERT_TRUE(Generate("qc", 400, 22, fed_->Path("data/qc")).ok());
    // The exact counts of each, through scratch stores.
    for (int i = 0; i < 3; ++i) {
      const std::string scratch = absl::StrCat("scratch", i);
      ASSERT_TRUE(fed_->LoadSite(scratch, data_[i]).ok());
      absl::StatusOr<std::vector<int64_t>> c =
          fed_->LocalCounts(scratch, kCheckQuery);
      ASSERT_TRUE(c.ok()) << c.status();
      counts_[i] = *c;
    }
    ASSERT_NE(counts_[0], counts_[1]);
    ASSERT_TRUE(fed_->LoadSite("fr", data_[0]).ok());
    ASSERT_TRUE(fed_->LoadSite("qc", fed_->Path("data/qc")).ok());
    NodeOptions fr;
    // Only the current snapshot kept, the pointer read every 100 ms.
    fr.extra_config = "snapshots_kept: 1\nsnapshot_check_interval_ms: 100";
    ASSERT_TRUE(fed_->StartNode("fr", fr).ok());
    ASSERT_TRUE(fed_->StartNode("qc").ok());
    ASSERT_TRUE(fed_->StartGateway(TestPolicy()).ok());
    absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> gw =
        fed_->Credentials("gateway", NodeId("fr"));
    ASSERT_TRUE(gw.ok()) << gw.status();
    as_gateway_ = *gw;
    v1_ = FrSnapshot();
    ASSERT_FALSE(v1_.empty());
  }

  absl::Status Generate(const std::string& site, int patients, int seed,
                        const std::string& out) {
    absl::StatusOr<CommandResult> gen = RunCommand(
        {PasserelleBin(), "generate", "--patients", absl::StrCat(patients),
         "--seed", absl::StrCat(seed), "--site", site, "--out", out});
    if (!gen.ok()) return gen.status();
    if (gen->exit_code != 0) return absl::InternalError(gen->err);
    return absl::OkStatus();
  }

  // `passerelle node ARGS...`: exit code and output.
  CommandResult Node(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {PasserelleBin(), "node"};
    argv.insert(argv.end(), args.begin(), args.end());
    absl::StatusOr<CommandResult> r = RunCommand(argv);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : CommandResult();
  }

  std::string FrSnapshot() {
    v1::NodeInfo info;
    grpc::Status st = fed_->InfoAtNode("fr", as_gateway_, &info);
    EXPECT_TRUE(st.ok()) << st.error_message();
    return info.snapshot();
  }

  // fr's exact counts, asked as the gateway.
  grpc::Status CountAtFr(Answer* a) {
    v1::CountRequest req;
    req.set_request_id(absl::StrCat("live-", next_id_++));
    req.set_project("exact");
    req.set_min_cell_size(1);
    absl::StatusOr<v1::Query> q = query::ParseQuery(kCheckQuery);
    if (!q.ok()) return grpc::Status(grpc::StatusCode::INTERNAL, "parse");
    *req.mutable_query() = *q;
    v1::CountResponse resp;
    grpc::Status st = fed_->CountAtNode("fr", as_gateway_, req, &resp);
    a->via = "node";
    a->snapshot = resp.snapshot();
    for (const v1::Cell& c : resp.cells()) a->counts.push_back(c.count());
    return st;
  }

  // fr's part of an exact-mode query through the gateway.
  grpc::Status QueryFr(Answer* a) {
    v1::QueryResponse resp;
    grpc::Status st = fed_->Query("exact", kCheckQuery, &resp);
    a->via = "gateway";
    if (st.ok() && !resp.complete()) {
      return grpc::Status(grpc::StatusCode::UNKNOWN,
                          "partial: " + resp.DebugString());
    }
    for (const v1::SiteResult& s : resp.sites()) {
      if (s.site() != "fr") continue;
      a->snapshot = s.snapshot();
      for (const v1::ReleasedCell& c : s.cells()) {
        a->counts.push_back(c.has_count() ? c.count() : -1);
      }
    }
    return st;
  }

  v1::MetricsResponse Metrics(const std::string& site) {
    grpc::ChannelArguments args;
    args.SetSslTargetNameOverride("localhost");
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    auto stub = v1::MetricsService::NewStub(
        grpc::CreateCustomChannel(fed_->Address(site), as_gateway_, args));
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    v1::MetricsResponse response;
    grpc::Status st = stub->GetMetrics(&context, {}, &response);
    EXPECT_TRUE(st.ok()) << st.error_message();
    return response;
  }
  uint64_t Refused() {
    v1::MetricsResponse m = Metrics("fr");
    auto it = m.refusals().find("snapshot_refused");
    return it == m.refusals().end() ? 0 : it->second;
  }
  bool Serving() {
    absl::StatusOr<int> h =
        HealthAt(fed_->Address("fr"), as_gateway_, "passerelle.v1.NodeService");
    return h.ok() && *h == kServing;
  }

  // fr still serves `version` with `counts`, and is SERVING.
  void ExpectServes(const std::string& version,
                    const std::vector<int64_t>& counts) {
    EXPECT_EQ(FrSnapshot(), version);
    Answer a;
    grpc::Status st = CountAtFr(&a);
    ASSERT_TRUE(st.ok()) << st.error_message();
    EXPECT_EQ(a.snapshot, version);
    EXPECT_EQ(a.counts, counts);
    EXPECT_TRUE(Serving());
    EXPECT_EQ(Metrics("fr").refusals().count("not_serving"), 0u);
  }

  std::string StoreDir() { return fed_->Path("fr/store"); }
  std::string SnapshotDir(const std::string& v) {
    return StoreDir() + "/snapshots/" + v;
  }
  // The largest SST file of a snapshot directory.
  static std::string LargestSst(const std::string& dir) {
    std::string best;
    uintmax_t size = 0;
    for (const auto& e : fs::recursive_directory_iterator(dir)) {
      if (e.path().extension() == ".sst" && e.file_size() > size) {
        size = e.file_size();
        best = e.path().string();
      }
    }
    return best;
  }
  // Loads data_[i] into a scratch store whose versions cannot collide with
  // fr's, and copies the snapshot into fr's store (not current): a snapshot
  // that can then be damaged before it is made current.
  std::string CopyInSnapshot(int i, int sequence) {
    const std::string scratch = fed_->Path(absl::StrCat("copy", sequence));
    fs::create_directories(scratch + "/store");
    WriteFile(scratch + "/store/sequence", absl::StrCat(sequence, "\n"));
    CommandResult r =
        Node({"load", "--store", scratch + "/store", "--site", "fr", data_[i]});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    std::string version;
    for (const auto& e : fs::directory_iterator(scratch + "/store/snapshots")) {
      version = e.path().filename().string();
    }
    // Copied beside, then moved in whole: the node removes directories of
    // snapshots/ that are not sealed snapshots.
    fs::copy(scratch + "/store/snapshots/" + version, scratch + "/moving",
             fs::copy_options::recursive);
    fs::rename(scratch + "/moving", SnapshotDir(version));
    return version;
  }
  // Makes `version` current by writing the pointer as `node load` does
  // (a temporary file renamed over it), without any check.
  void PointAt(const std::string& version) {
    WriteFile(StoreDir() + "/current-snapshot.tmp",
              "passerelle node store 1\ncurrent " + version + "\n");
    fs::rename(StoreDir() + "/current-snapshot.tmp",
               StoreDir() + "/current-snapshot");
  }

  std::unique_ptr<TempDir> dir_;
  std::unique_ptr<Federation> fed_;
  std::string data_[3];
  std::vector<int64_t> counts_[3];
  std::shared_ptr<grpc::ChannelCredentials> as_gateway_;
  std::string v1_;
  int next_id_ = 0;
};

TEST_F(LiveSnapshotTest, LoadWhileServingSwitchesAtOnePointUnderQueries) {
  // A charged query, and its repeat (free) before the switch.
  const std::string noised = "condition icd10:E11*";
  v1::QueryResponse first, repeat;
  ASSERT_TRUE(fed_->Query("noised", noised, &first).ok());
  EXPECT_GT(first.epsilon_charged(), 0);
  ASSERT_TRUE(fed_->Query("noised", noised, &repeat).ok());
  EXPECT_TRUE(repeat.repeat());
  EXPECT_EQ(repeat.epsilon_charged(), 0);

  // The stream: one client alternating straight counts and gateway queries.
  absl::Mutex mu;
  std::vector<Answer> answers;
  std::vector<std::string> failures;
  std::atomic<bool> stop{false};
  std::thread stream([&] {
    for (int i = 0; !stop.load(); ++i) {
      Answer a;
      grpc::Status st = i % 2 == 0 ? CountAtFr(&a) : QueryFr(&a);
      absl::MutexLock lock(&mu);
      if (!st.ok()) {
        failures.push_back(a.via + ": " + st.error_message());
      } else {
        answers.push_back(std::move(a));
      }
    }
  });
  auto answered = [&] {
    absl::MutexLock lock(&mu);
    return answers.size();
  };
  ASSERT_TRUE(WaitUntil([&] { return answered() >= 10; }));

  // A load while the node serves: no lock held by the node is in its way.
  CommandResult load =
      Node({"load", "--store", StoreDir(), "--site", "fr", data_[1]});
  ASSERT_EQ(load.exit_code, 0) << load.err;
  std::string v2;
  ASSERT_TRUE(WaitUntil([&] {
    v2 = FrSnapshot();
    return v2 != v1_;
  })) << fed_->node("fr").Log();
  // Enough answers after the switch to see the old one never comes back.
  const size_t at_switch = answered();
  ASSERT_TRUE(WaitUntil([&] { return answered() >= at_switch + 20; }));
  stop = true;
  stream.join();

  EXPECT_TRUE(failures.empty()) << failures.front();
  bool seen_new = false;
  int old_answers = 0, new_answers = 0;
  for (size_t i = 0; i < answers.size(); ++i) {
    const Answer& a = answers[i];
    SCOPED_TRACE(absl::StrCat("answer ", i, " via ", a.via));
    if (a.snapshot == v2) {
      seen_new = true;
      ++new_answers;
      EXPECT_TRUE(SameCounts(a, counts_[1]));
    } else {
      EXPECT_EQ(a.snapshot, v1_);
      EXPECT_FALSE(seen_new) << "the old snapshot answered after the new one";
      ++old_answers;
      EXPECT_TRUE(SameCounts(a, counts_[0]));
    }
  }
  EXPECT_GE(old_answers, 10);
  EXPECT_GE(new_answers, 20);
  EXPECT_TRUE(Serving());
  EXPECT_EQ(Metrics("fr").refusals().count("not_serving"), 0u);

  // The old snapshot's files go once nothing uses it (snapshots_kept: 1).
  EXPECT_TRUE(WaitUntil([&] { return !fs::exists(SnapshotDir(v1_)); }))
      << fed_->node("fr").Log();
  EXPECT_TRUE(fs::exists(SnapshotDir(v2)));
  EXPECT_TRUE(absl::StrContains(fed_->node("fr").Log(),
                                "removed old snapshot(s) " + v1_));

  // The steward's tool reads the store while the node serves it.
  absl::StatusOr<std::vector<int64_t>> local =
      fed_->LocalCounts("fr", kCheckQuery);
  ASSERT_TRUE(local.ok()) << local.status();
  EXPECT_EQ(*local, counts_[1]);

  // The repeat after the switch: a fresh answer from the new snapshot,
  // charged again.
  v1::QueryResponse after;
  ASSERT_TRUE(fed_->Query("noised", noised, &after).ok());
  EXPECT_FALSE(after.repeat());
  EXPECT_GT(after.epsilon_charged(), 0);
  for (const v1::SiteResult& s : after.sites()) {
    if (s.site() == "fr") {
      EXPECT_EQ(s.snapshot(), v2);
    }
  }
}

TEST_F(LiveSnapshotTest, BadSnapshotsAreRefusedWhileTheOldKeepsServing) {
  // Keeping 2 (the current one and the newest old one), so that a snapshot
  // copied in stays until it is made current.
  NodeOptions fr;
  fr.extra_config = "snapshots_kept: 2\nsnapshot_check_interval_ms: 100";
  ASSERT_TRUE(fed_->StartNode("fr", fr).ok());
  // Another site's data loaded into fr's store.
  CommandResult wrong = Node(
      {"load", "--store", StoreDir(), "--site", "qc", fed_->Path("data/qc")});
  ASSERT_EQ(wrong.exit_code, 0) << wrong.err;
  ASSERT_TRUE(WaitUntil([&] { return Refused() >= 1; }))
      << fed_->node("fr").Log();
  ExpectServes(v1_, counts_[0]);
  EXPECT_TRUE(absl::StrContains(fed_->node("fr").Log(), "holds site \"qc\""));

  // A complete snapshot of fr with one data file damaged in place (same
  // size): `node use` accepts it (it checks sizes), the node's checksums
  // refuse it.
  const std::string damaged = CopyInSnapshot(1, 100);
  {
    const std::string sst = LargestSst(SnapshotDir(damaged));
    ASSERT_FALSE(sst.empty());
    std::fstream f(sst, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(fs::file_size(sst) / 2));
    f.write("\x5a\x5a\x5a\x5a", 4);
  }
  CommandResult use = Node({"use", "--store", StoreDir(), damaged});
  ASSERT_EQ(use.exit_code, 0) << use.err;
  ASSERT_TRUE(WaitUntil([&] { return Refused() >= 2; }))
      << fed_->node("fr").Log();
  ExpectServes(v1_, counts_[0]);
  EXPECT_TRUE(
      absl::StrContains(fed_->node("fr").Log(), "does not match its checksum"));

  // A truncated one: `node use` refuses it; made current behind its back,
  // the node refuses it too.
  const std::string truncated = CopyInSnapshot(2, 200);
  {
    const std::string sst = LargestSst(SnapshotDir(truncated));
    fs::resize_file(sst, fs::file_size(sst) - 100);
  }
  use = Node({"use", "--store", StoreDir(), truncated});
  EXPECT_NE(use.exit_code, 0);
  EXPECT_TRUE(absl::StrContains(use.err, "truncated")) << use.err;
  PointAt(truncated);
  ASSERT_TRUE(WaitUntil([&] { return Refused() >= 3; }))
      << fed_->node("fr").Log();
  ExpectServes(v1_, counts_[0]);

  // A damaged pointer: nothing changes, and the node still serves.
  WriteFile(StoreDir() + "/current-snapshot.tmp", "garbage\n");
  fs::rename(StoreDir() + "/current-snapshot.tmp",
             StoreDir() + "/current-snapshot");
  ExpectServes(v1_, counts_[0]);
  EXPECT_EQ(Refused(), 3u);

  // A good load after all that switches.
  CommandResult load =
      Node({"load", "--store", StoreDir(), "--site", "fr", data_[2]});
  ASSERT_EQ(load.exit_code, 0) << load.err;
  std::string v3;
  ASSERT_TRUE(WaitUntil([&] {
    v3 = FrSnapshot();
    return v3 != v1_;
  })) << fed_->node("fr").Log();
  ExpectServes(v3, counts_[2]);
  EXPECT_EQ(Refused(), 3u);
}

}  // namespace
}  // namespace passerelle::testing
