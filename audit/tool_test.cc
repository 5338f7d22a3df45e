#include "audit/tool.h"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <unistd.h>

#include <filesystem>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "audit/merkle.h"
#include "gtest/gtest.h"
#include "rocksdb/db.h"

namespace passerelle::audit {
namespace {

namespace fs = std::filesystem;
using google::protobuf::Struct;
using passerelle::v1::AuditEntry;
using passerelle::v1::NodeAuditEntry;

const absl::Time kT0 = absl::FromUnixSeconds(1795000000);  // 2026-11-18.

Struct ParseJson(const std::string& json) {
  Struct s;
  auto status = google::protobuf::util::JsonStringToMessage(json, &s);
  EXPECT_TRUE(status.ok()) << status.ToString() << "\n" << json;
  return s;
}

std::string B64(const Struct& s, const std::string& field) {
  std::string out;
  EXPECT_TRUE(absl::Base64Unescape(s.fields().at(field).string_value(), &out));
  return out;
}

std::vector<std::string> B64List(const Struct& s, const std::string& field) {
  std::vector<std::string> out;
  for (const auto& v : s.fields().at(field).list_value().values()) {
    std::string h;
    EXPECT_TRUE(absl::Base64Unescape(v.string_value(), &h));
    out.push_back(h);
  }
  return out;
}

class AuditToolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "audit_tool_test.XXXXXX");
    dir_ = ::mkdtemp(tmpl.data());
    store_ = dir_ + "/store";
    auto key = SigningKey::Generate();
    ASSERT_TRUE(key.ok());
    key_ = std::shared_ptr<const SigningKey>(*std::move(key));
    ASSERT_TRUE(
        WriteFileSynced(dir_ + "/log.pub", *key_->PublicKeyPem(), 0644, false)
            .ok());
    AuditLogOptions options;
    options.origin = "passerelle.test/gateway";
    options.signing_key = key_;
    auto log = AuditLog::OpenDirectory(store_, options);
    ASSERT_TRUE(log.ok()) << log.status();
    // 0: alice allowed, 1: bob denied, 2: node entry, 3: opaque bytes,
    // 4: alice partial (two hours later), 5..9: carol allowed.
    ASSERT_TRUE((*log)
                    ->Append(EncodeRecord(Gateway(
                        0, "alice", passerelle::v1::AUDIT_DECISION_ALLOWED)))
                    .ok());
    ASSERT_TRUE((*log)
                    ->Append(EncodeRecord(Gateway(
                        1, "bob", passerelle::v1::AUDIT_DECISION_DENIED)))
                    .ok());
    NodeAuditEntry node;
    node.set_time_unix_micros(absl::ToUnixMicros(kT0 + absl::Minutes(2)));
    node.set_request_id("req-1");
    node.set_caller("gateway");
    node.set_project("diab");
    ASSERT_TRUE((*log)->Append(EncodeRecord(node)).ok());
    ASSERT_TRUE((*log)->Append("opaque bytes").ok());
    AuditEntry late =
        Gateway(4, "alice", passerelle::v1::AUDIT_DECISION_PARTIAL);
    late.set_time_unix_micros(absl::ToUnixMicros(kT0 + absl::Hours(2)));
    ASSERT_TRUE((*log)->Append(EncodeRecord(late)).ok());
    for (int i = 5; i < 10; ++i) {
      ASSERT_TRUE((*log)
                      ->Append(EncodeRecord(Gateway(
                          i, "carol", passerelle::v1::AUDIT_DECISION_ALLOWED)))
                      .ok());
    }
  }
  void TearDown() override { fs::remove_all(dir_); }

  static AuditEntry Gateway(int i, const std::string& caller,
                            passerelle::v1::AuditDecision decision) {
    AuditEntry e;
    e.set_time_unix_micros(absl::ToUnixMicros(kT0 + absl::Minutes(i)));
    e.set_request_id(absl::StrCat("req-", i));
    e.set_caller(caller);
    e.set_caller_role("researcher");
    e.set_project("diab");
    e.set_purpose("DUO:0000006");
    e.set_canonical_query(absl::StrCat("count where age >= ", 40 + i));
    e.set_decision(decision);
    return e;
  }

  int Run(std::vector<std::string> args) {
    out_.str("");
    err_.str("");
    return RunAuditTool(args, out_, err_);
  }

  std::unique_ptr<AuditLog> OpenReadOnly() {
    auto log = AuditLog::OpenDirectory(store_, AuditLogOptions());
    EXPECT_TRUE(log.ok()) << log.status();
    return *std::move(log);
  }

  std::string dir_;
  std::string store_;
  std::shared_ptr<const SigningKey> key_;
  std::ostringstream out_;
  std::ostringstream err_;
};

TEST_F(AuditToolTest, VerifyPassesWithStoredOrGivenKey) {
  EXPECT_EQ(Run({"verify", "--store", store_}), 0) << err_.str();
  EXPECT_TRUE(absl::StrContains(out_.str(), "OK")) << out_.str();
  EXPECT_TRUE(absl::StrContains(err_.str(), "warning"));
  EXPECT_EQ(
      Run({"verify", "--store", store_, "--public-key", dir_ + "/log.pub"}), 0)
      << out_.str() << err_.str();
  EXPECT_FALSE(absl::StrContains(err_.str(), "warning"));
  EXPECT_TRUE(absl::StrContains(out_.str(), "entries: 10 (10 verified)"));
  // With a checkpoint the auditor kept.
  ASSERT_EQ(Run({"checkpoint", "--store", store_}), 0);
  ASSERT_TRUE(
      WriteFileSynced(dir_ + "/kept.note", out_.str(), 0644, false).ok());
  EXPECT_EQ(Run({"verify", "--store", store_, "--public-key", dir_ + "/log.pub",
                 "--checkpoint", dir_ + "/kept.note"}),
            0)
      << out_.str() << err_.str();
  ASSERT_TRUE(WriteFileSynced(dir_ + "/bad.note", "junk\n", 0644, false).ok());
  EXPECT_EQ(
      Run({"verify", "--store", store_, "--checkpoint", dir_ + "/bad.note"}),
      2);
}

TEST_F(AuditToolTest, VerifyNamesTheFirstBadIndex) {
  {
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(rocksdb::Options(), store_, &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    std::string v;
    ASSERT_TRUE(db->Get(rocksdb::ReadOptions(), log_keys::Entry(6), &v).ok());
    v.back() ^= 0x20;
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), log_keys::Entry(6), v).ok());
  }
  EXPECT_EQ(
      Run({"verify", "--store", store_, "--public-key", dir_ + "/log.pub"}), 1);
  EXPECT_TRUE(absl::StrContains(out_.str(), "FAILED: first bad index 6"))
      << out_.str();
}

TEST_F(AuditToolTest, VerifyWithAnotherKeyFails) {
  auto other = SigningKey::Generate();
  ASSERT_TRUE(WriteFileSynced(dir_ + "/other.pub", *(*other)->PublicKeyPem(),
                              0644, false)
                  .ok());
  EXPECT_EQ(
      Run({"verify", "--store", store_, "--public-key", dir_ + "/other.pub"}),
      1);
  EXPECT_TRUE(absl::StrContains(out_.str(), "first bad index 0"));
}

TEST_F(AuditToolTest, ShowDecodesEitherKind) {
  ASSERT_EQ(Run({"show", "1", "--store", store_}), 0) << err_.str();
  Struct s = ParseJson(out_.str());
  EXPECT_EQ(s.fields().at("index").number_value(), 1);
  EXPECT_EQ(s.fields()
                .at("record")
                .struct_value()
                .fields()
                .at("gateway")
                .struct_value()
                .fields()
                .at("caller")
                .string_value(),
            "bob");
  ASSERT_EQ(Run({"show", "2", "--store", store_}), 0);
  EXPECT_TRUE(ParseJson(out_.str())
                  .fields()
                  .at("record")
                  .struct_value()
                  .fields()
                  .contains("node"));
  ASSERT_EQ(Run({"show", "3", "--store", store_}), 0);
  EXPECT_EQ(B64(ParseJson(out_.str()), "entry_base64"), "opaque bytes");
  EXPECT_EQ(Run({"show", "10", "--store", store_}), 1);
  EXPECT_EQ(Run({"show", "x", "--store", store_}), 2);
}

TEST_F(AuditToolTest, SearchFilters) {
  auto log = OpenReadOnly();
  auto indices = [&](const RecordFilter& f) {
    std::vector<uint64_t> out;
    auto hits = SearchLog(*log, f);
    EXPECT_TRUE(hits.ok());
    for (const auto& [i, r] : *hits) out.push_back(i);
    return out;
  };
  RecordFilter f;
  f.caller = "alice";
  EXPECT_EQ(indices(f), (std::vector<uint64_t>{0, 4}));
  f = RecordFilter();
  f.outcome = passerelle::v1::AUDIT_DECISION_DENIED;
  EXPECT_EQ(indices(f), (std::vector<uint64_t>{1}));
  f = RecordFilter();
  f.since = kT0 + absl::Minutes(1);
  f.until = kT0 + absl::Minutes(6);
  EXPECT_EQ(indices(f), (std::vector<uint64_t>{1, 2, 5}));

  ASSERT_EQ(Run({"search", "--store", store_, "--caller", "alice", "--since",
                 "2026-11-18T11:00:00Z", "--outcome", "partial"}),
            0)
      << err_.str();
  std::vector<std::string> lines =
      absl::StrSplit(out_.str(), '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_TRUE(absl::StartsWith(lines[0], "4\t")) << lines[0];
  EXPECT_EQ(Run({"search", "--store", store_, "--since", "noon"}), 2);
  EXPECT_EQ(Run({"search", "--store", store_, "--outcome", "maybe"}), 2);
}

TEST_F(AuditToolTest, ExportJsonlAndFhir) {
  ASSERT_EQ(Run({"export", "--store", store_, "--format", "jsonl"}), 0);
  std::vector<std::string> lines =
      absl::StrSplit(out_.str(), '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 10u);
  auto log = OpenReadOnly();
  for (size_t i = 0; i < lines.size(); ++i) {
    Struct row = ParseJson(lines[i]);
    EXPECT_EQ(row.fields().at("index").number_value(), i);
    EXPECT_EQ(B64(row, "leaf_hash"), *log->LeafHash(i));
  }
  ASSERT_EQ(Run({"export", "--store", store_, "--format=fhir"}), 0);
  Struct bundle = ParseJson(out_.str());
  EXPECT_EQ(bundle.fields().at("resourceType").string_value(), "Bundle");
  const auto& entries = bundle.fields().at("entry").list_value().values();
  EXPECT_EQ(entries.size(), 9);  // The opaque entry has no AuditEvent.
  for (const auto& e : entries) {
    const Struct& ev = e.struct_value().fields().at("resource").struct_value();
    EXPECT_EQ(ev.fields().at("resourceType").string_value(), "AuditEvent");
    EXPECT_EQ(ev.fields().at("action").string_value(), "E");
  }
  EXPECT_EQ(Run({"export", "--store", store_, "--format", "csv"}), 2);
}

TEST_F(AuditToolTest, ProofsVerifyIndependently) {
  for (uint64_t size : {1, 5, 10}) {
    for (uint64_t index = 0; index < size; ++index) {
      ASSERT_EQ(Run({"proof", "--store", store_, "--index", absl::StrCat(index),
                     "--size", absl::StrCat(size)}),
                0)
          << err_.str();
      Struct p = ParseJson(out_.str());
      EXPECT_EQ(p.fields().at("leafIdx").number_value(), index);
      EXPECT_EQ(p.fields().at("treeSize").number_value(), size);
      EXPECT_TRUE(VerifyInclusion(B64(p, "leafHash"), index, size,
                                  B64List(p, "proof"), B64(p, "root"))
                      .ok());
    }
  }
  // Without --size: the whole log; the root is the latest checkpoint's.
  ASSERT_EQ(Run({"proof", "--store", store_, "--index", "3"}), 0);
  Struct p = ParseJson(out_.str());
  ASSERT_EQ(Run({"checkpoint", "--store", store_}), 0);
  auto pub = VerifyingKey::FromRaw(key_->public_key());
  auto cp = OpenCheckpoint(out_.str(), "passerelle.test/gateway", *pub);
  ASSERT_TRUE(cp.ok()) << cp.status();
  EXPECT_EQ(cp->size, 10u);
  EXPECT_EQ(B64(p, "root"), cp->root_hash);
  EXPECT_EQ(B64(p, "leafHash"), HashLeaf("opaque bytes"));

  for (uint64_t a = 1; a <= 10; ++a) {
    for (uint64_t b = a; b <= 10; ++b) {
      ASSERT_EQ(Run({"consistency", "--store", store_, "--from",
                     absl::StrCat(a), "--to", absl::StrCat(b)}),
                0)
          << err_.str();
      Struct c = ParseJson(out_.str());
      EXPECT_TRUE(VerifyConsistency(a, b, B64List(c, "proof"), B64(c, "root1"),
                                    B64(c, "root2"))
                      .ok())
          << a << " -> " << b;
    }
  }
  EXPECT_EQ(Run({"proof", "--store", store_, "--index", "3", "--size", "11"}),
            1);
  EXPECT_EQ(Run({"consistency", "--store", store_, "--from", "3"}), 2);
}

TEST_F(AuditToolTest, PublicKeyAndUsageErrors) {
  ASSERT_EQ(Run({"public-key", "--store", store_}), 0);
  EXPECT_TRUE(absl::StrContains(out_.str(), "BEGIN PUBLIC KEY"));
  EXPECT_TRUE(absl::StrContains(
      out_.str(),
      NoteVerifierKey("passerelle.test/gateway", key_->public_key())));
  EXPECT_EQ(Run({}), 2);
  EXPECT_EQ(Run({"help"}), 0);
  EXPECT_EQ(Run({"verify"}), 2);
  EXPECT_EQ(Run({"frobnicate", "--store", store_}), 2);
  EXPECT_EQ(Run({"verify", "--store", store_, "--bogus", "1"}), 2);
  EXPECT_EQ(Run({"verify", "--store", dir_ + "/nowhere"}), 1);
}

TEST_F(AuditToolTest, CrossCheckGatewayAgainstNodeLog) {
  auto make_log = [&](const std::string& dir, const std::string& origin) {
    AuditLogOptions o;
    o.origin = origin;
    o.signing_key = std::shared_ptr<const SigningKey>(*SigningKey::Generate());
    auto log = AuditLog::OpenDirectory(dir, o);
    EXPECT_TRUE(log.ok()) << log.status();
    return *std::move(log);
  };
  auto node_entry = [](const std::string& req, const std::string& query,
                       passerelle::v1::AuditDecision d) {
    NodeAuditEntry e;
    e.set_request_id(req);
    e.set_project("diab");
    e.set_canonical_query(query);
    e.set_snapshot("s1");
    e.set_site("fr");
    e.set_decision(d);
    return EncodeRecord(e);
  };
  auto gw_entry = [](const std::string& req, const std::string& query,
                     std::optional<uint64_t> node_index) {
    AuditEntry e;
    e.set_request_id(req);
    e.set_project("diab");
    e.set_canonical_query(query);
    auto* site = e.add_sites();
    site->set_site("fr");
    site->set_status("ok");
    site->set_snapshot("s1");
    if (node_index.has_value()) site->set_node_audit_index(*node_index);
    return EncodeRecord(e);
  };
  const std::string node_dir = dir_ + "/node";
  const std::string gw_dir = dir_ + "/gw";
  {
    auto node = make_log(node_dir, "passerelle.test/fr");
    auto gw = make_log(gw_dir, "passerelle.test/gw");
    const auto allowed = passerelle::v1::AUDIT_DECISION_ALLOWED;
    ASSERT_TRUE(node->Append(node_entry("req-1", "Q1", allowed)).ok());
    ASSERT_TRUE(node->Append(node_entry("req-2", "Q2", allowed)).ok());
    ASSERT_TRUE(node->Append(node_entry("req-3", "Q3", allowed)).ok());
    ASSERT_TRUE(node->Append(node_entry("req-4", "Q4",
                                        passerelle::v1::AUDIT_DECISION_DENIED))
                    .ok());
    ASSERT_TRUE(gw->Append(gw_entry("req-1", "Q1", 0)).ok());
    ASSERT_TRUE(gw->Append(gw_entry("req-2", "Q2 altered", 1)).ok());
    ASSERT_TRUE(gw->Append(gw_entry("req-5", "Q5", std::nullopt)).ok());
    ASSERT_TRUE(gw->Append(gw_entry("req-6", "Q6", 9)).ok());
    // req-7: the node answered, the gateway recorded fr as failed (e.g. the
    // node died before its reply). req-8: the gateway died after the
    // fan-out; its start-up recovery recorded the request as interrupted.
    ASSERT_TRUE(node->Append(node_entry("req-7", "Q7", allowed)).ok());
    ASSERT_TRUE(node->Append(node_entry("req-8", "Q8", allowed)).ok());
    AuditEntry failed;
    failed.set_request_id("req-7");
    failed.set_project("diab");
    failed.set_canonical_query("Q7");
    failed.add_sites()->set_site("fr");
    failed.mutable_sites(0)->set_status("failed");
    ASSERT_TRUE(gw->Append(EncodeRecord(failed)).ok());
    AuditEntry interrupted;
    interrupted.set_request_id("req-8");
    interrupted.set_project("diab");
    interrupted.set_decision(passerelle::v1::AUDIT_DECISION_FAILED);
    interrupted.add_reasons("interrupted: the gateway stopped after ...");
    ASSERT_TRUE(gw->Append(EncodeRecord(interrupted)).ok());
  }
  auto gw = AuditLog::OpenDirectory(gw_dir, AuditLogOptions());
  auto node = AuditLog::OpenDirectory(node_dir, AuditLogOptions());
  ASSERT_TRUE(gw.ok() && node.ok());
  auto issues = CrossCheckSite(**gw, **node, "fr");
  ASSERT_TRUE(issues.ok()) << issues.status();
  ASSERT_EQ(issues->size(), 6u);
  auto at = [&](int k) { return (*issues)[k]; };
  EXPECT_EQ(at(0).gateway_index, 1u);
  EXPECT_EQ(at(0).node_index, 1u);
  EXPECT_TRUE(absl::StrContains(at(0).problem, "canonical query differs"));
  EXPECT_EQ(at(1).gateway_index, 2u);
  EXPECT_FALSE(at(1).node_index.has_value());
  EXPECT_EQ(at(2).gateway_index, 3u);
  EXPECT_EQ(at(2).node_index, 9u);
  EXPECT_FALSE(at(3).gateway_index.has_value());
  EXPECT_EQ(at(3).node_index, 2u);  // req-3: answered, never logged.
  for (int k = 0; k < 4; ++k) EXPECT_FALSE(at(k).accounted) << k;
  // Recorded by the gateway, not released: listed, not mismatches.
  EXPECT_TRUE(at(4).accounted);
  EXPECT_EQ(at(4).gateway_index, 4u);
  EXPECT_EQ(at(4).node_index, 4u);
  EXPECT_TRUE(absl::StrContains(at(4).problem, "site failed")) << at(4).problem;
  EXPECT_TRUE(at(5).accounted);
  EXPECT_EQ(at(5).gateway_index, 5u);
  EXPECT_EQ(at(5).node_index, 5u);
  EXPECT_TRUE(absl::StrContains(at(5).problem, "interrupted")) << at(5).problem;
  // Another site's view: nothing to compare; req-7's entry does not list qc
  // (unreferenced), the interrupted req-8 may have reached any site.
  auto other = CrossCheckSite(**gw, **node, "qc");
  ASSERT_TRUE(other.ok());
  ASSERT_EQ(other->size(), 5u);
  int accounted = 0;
  for (const auto& issue : *other) accounted += issue.accounted ? 1 : 0;
  EXPECT_EQ(accounted, 1);

  EXPECT_EQ(Run({"crosscheck", "--store", gw_dir, "--node-store", node_dir,
                 "--site", "fr"}),
            1);
  EXPECT_TRUE(absl::StrContains(out_.str(), "MISMATCH: 4 issue(s)"))
      << out_.str();
  EXPECT_TRUE(absl::StrContains(out_.str(), "note: gateway 4\tnode 4\t"))
      << out_.str();
  EXPECT_EQ(Run({"crosscheck", "--store", gw_dir, "--site", "fr"}), 2);
}

TEST_F(AuditToolTest, BudgetReadsAndRepeatsAreRendered) {
  {
    AuditLogOptions options;
    options.origin = "passerelle.test/gateway";
    options.signing_key = key_;
    auto log = AuditLog::OpenDirectory(store_, options);
    ASSERT_TRUE(log.ok()) << log.status();
    AuditEntry budget =
        Gateway(10, "alice", passerelle::v1::AUDIT_DECISION_ALLOWED);
    budget.set_operation("budget");
    budget.clear_canonical_query();
    ASSERT_TRUE((*log)->Append(EncodeRecord(budget)).ok());  // 10
    AuditEntry repeat =
        Gateway(11, "alice", passerelle::v1::AUDIT_DECISION_ALLOWED);
    repeat.set_repeat_of_index(0);
    ASSERT_TRUE((*log)->Append(EncodeRecord(repeat)).ok());  // 11
  }
  ASSERT_EQ(Run({"search", "--store", store_, "--caller", "alice"}), 0);
  std::vector<std::string> lines =
      absl::StrSplit(out_.str(), '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 4u) << out_.str();
  std::vector<std::string> cols = absl::StrSplit(lines[0], '\t');
  ASSERT_GE(cols.size(), 5u);
  EXPECT_EQ(cols[2], "gateway");
  EXPECT_EQ(cols[3], "query");  // Older entries leave it empty.
  EXPECT_EQ(cols[4], "allowed");
  cols = absl::StrSplit(lines[2], '\t');
  EXPECT_EQ(cols[0], "10");
  EXPECT_EQ(cols[3], "budget");
  EXPECT_TRUE(absl::EndsWith(lines[3], "\trepeat_of=0")) << lines[3];
  EXPECT_FALSE(absl::StrContains(lines[2], "repeat_of"));

  ASSERT_EQ(Run({"show", "10", "--store", store_}), 0);
  EXPECT_TRUE(absl::StrContains(out_.str(), "\"operation\": \"budget\""))
      << out_.str();
  ASSERT_EQ(Run({"show", "11", "--store", store_}), 0);
  EXPECT_TRUE(absl::StrContains(out_.str(), "\"repeat_of_index\": \"0\""))
      << out_.str();

  ASSERT_EQ(Run({"export", "--store", store_, "--format", "fhir"}), 0);
  Struct bundle = ParseJson(out_.str());
  const auto& entries = bundle.fields().at("entry").list_value().values();
  ASSERT_EQ(entries.size(), 11);
  auto event = [&](int k) -> const Struct& {
    return entries[k].struct_value().fields().at("resource").struct_value();
  };
  EXPECT_EQ(event(9).fields().at("id").string_value(), "passerelle-audit-10");
  EXPECT_EQ(event(9).fields().at("action").string_value(), "R");
  EXPECT_EQ(event(0).fields().at("action").string_value(), "E");
  const auto& repeat_entities =
      event(10).fields().at("entity").list_value().values();
  ASSERT_EQ(repeat_entities.size(), 2);
  EXPECT_EQ(repeat_entities[1]
                .struct_value()
                .fields()
                .at("what")
                .struct_value()
                .fields()
                .at("reference")
                .string_value(),
            "AuditEvent/passerelle-audit-0");
}

// Each way of tampering with the RocksDB store, through the command an
// auditor runs: exit code 1 and the first bad index named.
struct StoreTamper {
  std::string name;
  std::function<void(rocksdb::DB*, const SigningKey& key)> apply;
  int first_bad_index;
};

class AuditToolTamperTest : public AuditToolTest,
                            public ::testing::WithParamInterface<StoreTamper> {
};

TEST_P(AuditToolTamperTest, VerifyNamesTheFirstBadIndex) {
  {
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(rocksdb::Options(), store_, &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    GetParam().apply(db.get(), *key_);
  }
  ASSERT_EQ(
      Run({"verify", "--store", store_, "--public-key", dir_ + "/log.pub"}), 1)
      << out_.str() << err_.str();
  EXPECT_TRUE(absl::StrContains(out_.str(),
                                absl::StrCat("FAILED: first bad index ",
                                             GetParam().first_bad_index, ":")))
      << out_.str();
}

std::string Get(rocksdb::DB* db, const std::string& key) {
  std::string v;
  EXPECT_TRUE(db->Get(rocksdb::ReadOptions(), key, &v).ok()) << key;
  return v;
}
void Put(rocksdb::DB* db, const std::string& key, const std::string& value) {
  ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), key, value).ok());
}
void Del(rocksdb::DB* db, const std::string& key) {
  ASSERT_TRUE(db->Delete(rocksdb::WriteOptions(), key).ok());
}

INSTANTIATE_TEST_SUITE_P(
    EachTampering, AuditToolTamperTest,
    ::testing::Values(
        StoreTamper{"FlippedByte",
                    [](rocksdb::DB* db, const SigningKey&) {
                      std::string e = Get(db, log_keys::Entry(6));
                      e[e.size() / 2] ^= 0x04;
                      Put(db, log_keys::Entry(6), e);
                    },
                    6},
        StoreTamper{"DeletedEntry",
                    [](rocksdb::DB* db, const SigningKey&) {
                      Del(db, log_keys::Entry(4));
                    },
                    4},
        StoreTamper{"SwappedEntries",
                    [](rocksdb::DB* db, const SigningKey&) {
                      const std::string a = Get(db, log_keys::Entry(2));
                      const std::string b = Get(db, log_keys::Entry(7));
                      Put(db, log_keys::Entry(2), b);
                      Put(db, log_keys::Entry(7), a);
                    },
                    2},
        StoreTamper{"TruncatedTail",
                    [](rocksdb::DB* db, const SigningKey&) {
                      for (int i = 7; i < 10; ++i) Del(db, log_keys::Entry(i));
                    },
                    7},
        StoreTamper{"TruncatedTailWithSizeRewound",
                    [](rocksdb::DB* db, const SigningKey&) {
                      for (int i = 7; i < 10; ++i) {
                        Del(db, log_keys::Entry(i));
                        Del(db, log_keys::Node(0, i));
                      }
                      Put(db, log_keys::kSize, log_keys::EncodeU64(7));
                    },
                    7},
        StoreTamper{"ReplacedCheckpointAnotherKey",
                    [](rocksdb::DB* db, const SigningKey&) {
                      Checkpoint forged{"passerelle.test/gateway", 10,
                                        Sha256("forged")};
                      auto other = SigningKey::Generate();
                      Put(db, log_keys::CheckpointKey(10),
                          *SignCheckpoint(forged, forged.origin, **other));
                    },
                    9},
        StoreTamper{"ReplacedCheckpointResigned",
                    // Even with the log's own key: the root is not the
                    // entries'.
                    [](rocksdb::DB* db, const SigningKey& key) {
                      Checkpoint forged{"passerelle.test/gateway", 10,
                                        Sha256("forged")};
                      Put(db, log_keys::CheckpointKey(10),
                          *SignCheckpoint(forged, forged.origin, key));
                    },
                    9},
        StoreTamper{"ReplacedCheckpointByAnEarlierOne",
                    [](rocksdb::DB* db, const SigningKey&) {
                      Put(db, log_keys::CheckpointKey(6),
                          Get(db, log_keys::CheckpointKey(5)));
                    },
                    5}),
    [](const ::testing::TestParamInfo<StoreTamper>& info) {
      return info.param.name;
    });

}  // namespace
}  // namespace passerelle::audit
