// Proofs printed by the `passerelle` binary, checked by an independent RFC
// 6962 implementation (tests/rfc6962_verify.py, Python stdlib only): every
// inclusion proof `audit proof --index N --size S` and consistency proof
// `audit consistency --from A --to B` over a log of 37 entries must verify
// there, the same proofs altered must not, and the roots the binary prints
// must equal the Merkle tree hash Python recomputes from the exported entry
// bytes.
#include <unistd.h>

#include <cstdlib>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "audit/log.h"
#include "audit/merkle.h"
#include "audit/records.h"
#include "gtest/gtest.h"
#include "tests/process.h"

namespace passerelle::testing {
namespace {

constexpr int kEntries = 37;

// python3 from $PATH, or "" when absent.
std::string FindPython() {
  const char* path = std::getenv("PATH");
  for (absl::string_view dir :
       absl::StrSplit(path != nullptr ? path : "/usr/bin:/bin", ':')) {
    if (dir.empty()) continue;
    std::string candidate = absl::StrCat(dir, "/python3");
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

// The value of a top-level "name": "..." string field of the CLI's JSON.
std::string StringField(const std::string& json, const std::string& name) {
  const std::string key = absl::StrCat("\"", name, "\": \"");
  size_t at = json.find(key);
  if (at == std::string::npos) return "";
  at += key.size();
  return json.substr(at, json.find('"', at) - at);
}

class AuditProofTest : public ::testing::Test {
 protected:
  void SetUp() override {
    python_ = FindPython();
    if (python_.empty()) {
      GTEST_SKIP() << "python3 is not installed (scripts/install-deps.sh "
                      "installs it): the independent RFC 6962 verifier "
                      "tests/rfc6962_verify.py cannot run";
    }
    verifier_ = SourceDir() + "/tests/rfc6962_verify.py";
    ASSERT_EQ(::access(verifier_.c_str(), R_OK), 0) << verifier_;
    store_ = dir_.Sub("audit");
    auto key = audit::SigningKey::Generate();
    ASSERT_TRUE(key.ok()) << key.status();
    audit::AuditLogOptions options;
    options.origin = "passerelle.test/gateway";
    options.signing_key =
        std::shared_ptr<const audit::SigningKey>(*std::move(key));
    auto log = audit::AuditLog::OpenDirectory(store_, options);
    ASSERT_TRUE(log.ok()) << log.status();
    for (int i = 0; i < kEntries; ++i) {
      v1::AuditEntry e;
      e.set_time_unix_micros(1795000000000000 + i * 60000000LL);
      e.set_request_id(absl::StrCat("req-", i));
      e.set_caller("spiffe://passerelle/user/alice");
      e.set_project("exact");
      e.set_canonical_query(
          absl::StrCat("condition icd10:E11 ", std::string(i % 5, '*')));
      e.set_decision(v1::AUDIT_DECISION_ALLOWED);
      ASSERT_TRUE((*log)->Append(audit::EncodeRecord(e)).ok());
    }
  }

  CommandResult Audit(std::vector<std::string> args) {
    std::vector<std::string> argv = {PasserelleBin(), "audit"};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.push_back("--store");
    argv.push_back(store_);
    absl::StatusOr<CommandResult> r = RunCommand(argv);
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok()) return {};
    EXPECT_EQ(r->exit_code, 0) << absl::StrJoin(args, " ") << ": " << r->err;
    return *r;
  }

  // Runs the Python verifier over `proofs` (JSON objects) in one process
  // and returns its verdict per proof ("ok" or "bad: ...").
  std::vector<std::string> PythonVerdicts(
      const std::vector<std::string>& proofs) {
    const std::string batch = dir_.Sub("batch.json");
    WriteFile(batch,
              absl::StrCat("[\n", absl::StrJoin(proofs, ",\n"), "\n]\n"));
    absl::StatusOr<CommandResult> r =
        RunCommand({python_, verifier_, "batch", batch});
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok()) return {};
    EXPECT_EQ(r->exit_code, 0) << r->err;
    return absl::StrSplit(r->out, '\n', absl::SkipEmpty());
  }

  TempDir dir_;
  std::string python_;
  std::string verifier_;
  std::string store_;
};

// Distinct values of `v` within [lo, hi].
std::vector<uint64_t> Within(std::vector<int64_t> v, int64_t lo, int64_t hi) {
  std::set<uint64_t> out;
  for (int64_t x : v) {
    if (x >= lo && x <= hi) out.insert(static_cast<uint64_t>(x));
  }
  return {out.begin(), out.end()};
}

TEST_F(AuditProofTest, CliProofsVerifyWithAnIndependentImplementation) {
  const std::string other_hash =
      absl::Base64Escape(audit::Sha256("not in this tree"));
  std::vector<std::string> proofs;  // Genuine, then their alterations.
  std::vector<bool> genuine;
  std::map<uint64_t, std::string> root_at;  // As the binary printed them.
  int inclusion = 0, consistency = 0;

  auto add_altered = [&](const std::string& json) {
    // Another hash in place of the first proof element, and of the root(s).
    const std::string first = "\"proof\": [\n    \"";
    const size_t at = json.find(first);
    if (at != std::string::npos) {
      std::string altered = json;
      altered.replace(at + first.size(), other_hash.size(), other_hash);
      proofs.push_back(altered);
      genuine.push_back(false);
    }
    for (const char* field : {"root", "root1", "root2", "leafHash"}) {
      const std::string v = StringField(json, field);
      if (v.empty()) continue;
      proofs.push_back(absl::StrReplaceAll(
          json, {{absl::StrCat("\"", field, "\": \"", v, "\""),
                  absl::StrCat("\"", field, "\": \"", other_hash, "\"")}}));
      genuine.push_back(false);
    }
  };

  for (int64_t s : {1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 16, 17, 31, 32, 33, 37}) {
    for (uint64_t n : Within({0, 1, s / 2, s - 2, s - 1}, 0, s - 1)) {
      CommandResult r = Audit(
          {"proof", "--index", absl::StrCat(n), "--size", absl::StrCat(s)});
      ASSERT_TRUE(absl::StrContains(r.out, absl::StrCat("\"leafIdx\": ", n)))
          << r.out;
      proofs.push_back(r.out);
      genuine.push_back(true);
      ++inclusion;
      root_at[s] = StringField(r.out, "root");
      add_altered(r.out);
      // Claiming another index (or tree size) with the same proof.
      if (n + 1 < static_cast<uint64_t>(s)) {
        proofs.push_back(absl::StrReplaceAll(
            r.out, {{absl::StrCat("\"leafIdx\": ", n, ","),
                     absl::StrCat("\"leafIdx\": ", n + 1, ",")}}));
        genuine.push_back(false);
      }
    }
  }
  for (int64_t a : {1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 31, 32, 33, 37}) {
    for (uint64_t b :
         Within({a, a + 1, 2 * a - 1, 2 * a, kEntries}, a, kEntries)) {
      CommandResult r = Audit(
          {"consistency", "--from", absl::StrCat(a), "--to", absl::StrCat(b)});
      ASSERT_TRUE(absl::StrContains(r.out, absl::StrCat("\"size2\": ", b)))
          << r.out;
      proofs.push_back(r.out);
      genuine.push_back(true);
      ++consistency;
      add_altered(r.out);
      if (a > 1 && static_cast<uint64_t>(a) < b) {
        proofs.push_back(absl::StrReplaceAll(
            r.out, {{absl::StrCat("\"size1\": ", a, ","),
                     absl::StrCat("\"size1\": ", a - 1, ",")}}));
        genuine.push_back(false);
      }
    }
  }
  ASSERT_GE(inclusion, 60);
  ASSERT_GE(consistency, 40);

  const std::vector<std::string> verdicts = PythonVerdicts(proofs);
  ASSERT_EQ(verdicts.size(), proofs.size());
  int accepted = 0, rejected = 0;
  for (size_t i = 0; i < proofs.size(); ++i) {
    if (genuine[i]) {
      EXPECT_EQ(verdicts[i], "ok") << proofs[i];
      ++accepted;
    } else {
      EXPECT_TRUE(absl::StartsWith(verdicts[i], "bad: "))
          << "an altered proof verified:\n"
          << proofs[i];
      ++rejected;
    }
  }
  EXPECT_EQ(accepted, inclusion + consistency);
  EXPECT_GT(rejected, accepted);

  // The roots the binary printed are the Merkle tree hashes Python computes
  // from the exported bytes, and the full one is the signed checkpoint's.
  CommandResult exported = Audit({"export", "--format", "jsonl"});
  const std::string jsonl = dir_.Sub("export.jsonl");
  WriteFile(jsonl, exported.out);
  std::vector<std::string> args = {python_, verifier_, "roots", jsonl};
  for (const auto& [s, root] : root_at) args.push_back(absl::StrCat(s));
  absl::StatusOr<CommandResult> roots = RunCommand(args);
  ASSERT_TRUE(roots.ok() && roots->exit_code == 0) << roots->err;
  std::vector<std::string> lines =
      absl::StrSplit(roots->out, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), root_at.size());
  size_t k = 0;
  for (const auto& [s, root] : root_at) {
    EXPECT_EQ(lines[k++], root) << "root of the first " << s << " entries";
  }
  CommandResult note = Audit({"checkpoint"});
  std::vector<std::string> body = absl::StrSplit(note.out, '\n');
  ASSERT_GE(body.size(), 3u) << note.out;
  EXPECT_EQ(body[1], absl::StrCat(kEntries));
  EXPECT_EQ(body[2], root_at[kEntries]);
}

TEST_F(AuditProofTest, IndependentVerifierAgreesWithTheSharedVectors) {
  const std::string shared = SourceDir() + "/../shared/testdata/merkle";
  if (::access(shared.c_str(), R_OK) != 0) {
    GTEST_SKIP() << "../shared/testdata/merkle is absent: the "
                    "transparency-dev vectors cannot be checked";
  }
  absl::StatusOr<CommandResult> r =
      RunCommand({python_, verifier_, "vectors", shared});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 0) << r->out << r->err;
  EXPECT_TRUE(absl::StrContains(r->out, " 0 disagreements")) << r->out;
}

}  // namespace
}  // namespace passerelle::testing
