#include "node/snds_loader.h"

#include <algorithm>
#include <filesystem>
#include <limits>
#include <map>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "node/loader.h"
#include "node/table_reader.h"
#include "query/vocabulary.h"

namespace passerelle::node {
namespace {

constexpr double kNoValue = std::numeric_limits<double>::quiet_NaN();

// The nine columns that join ER_PHA_F (and the other DCIR detail tables) to
// ER_PRS_F.
const std::vector<std::string>& DcirJoinColumns() {
  static const auto* const kColumns = new std::vector<std::string>{
      "DCT_ORD_NUM", "FLX_DIS_DTD", "FLX_EMT_NUM", "FLX_EMT_ORD", "FLX_EMT_TYP",
      "FLX_TRT_DTD", "ORG_CLE_NUM", "PRS_ORD_NUM", "REM_TYP_AFF"};
  return *kColumns;
}

// T_MCOaaC return codes that must be "0" for a valid patient linkage.
const std::vector<std::string>& LinkageReturnCodes() {
  static const auto* const kCodes = new std::vector<std::string>{
      "NIR_RET", "NAI_RET", "SEX_RET",     "SEJ_RET",    "FHO_RET",
      "PMS_RET", "DAT_RET", "COH_NAI_RET", "COH_SEX_RET"};
  return *kCodes;
}

std::string BaseName(const std::string& path) {
  return std::filesystem::path(path).filename().string();
}

absl::string_view Strip(absl::string_view s) {
  return absl::StripAsciiWhitespace(s);
}

// BEN_RNG_GEM is an integer; "01" and "1" are the same rank.
std::string NormalizeRank(absl::string_view rank) {
  rank = Strip(rank);
  bool digits = !rank.empty();
  for (char c : rank)
    digits &= absl::ascii_isdigit(static_cast<unsigned char>(c));
  if (!digits) return std::string(rank);
  while (rank.size() > 1 && rank.front() == '0') rank.remove_prefix(1);
  return std::string(rank);
}

std::string PersonKey(absl::string_view psa, absl::string_view rank) {
  return absl::StrCat(Strip(psa), "\x1f", NormalizeRank(rank));
}

std::string JoinKey(const std::vector<absl::string_view>& f, size_t first,
                    size_t n) {
  std::string key;
  for (size_t i = first; i < first + n; ++i) {
    absl::StrAppend(&key, Strip(f[i]), "\x1f");
  }
  return key;
}

bool AllDigits(absl::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

int MonthFromAbbrev(absl::string_view m) {
  static constexpr const char* kMonths[] = {"JAN", "FEB", "MAR", "APR",
                                            "MAY", "JUN", "JUL", "AUG",
                                            "SEP", "OCT", "NOV", "DEC"};
  for (int i = 0; i < 12; ++i) {
    if (absl::EqualsIgnoreCase(m, kMonths[i])) return i + 1;
  }
  return 0;
}

absl::Status BadDate(absl::string_view s, absl::string_view expected) {
  return absl::InvalidArgumentError(
      absl::StrCat("invalid date \"", s, "\" (expected ", expected, ")"));
}

// One PMSI MCO year: its B, C, D and A tables ("" when absent).
struct PmsiYear {
  std::string b, c, d, a;
};

// T_MCO<aa><X>.csv where <aa> is "aa" (as in the published layouts) or two
// digits, X one of A, B, C, D; any letter case.
absl::StatusOr<std::map<std::string, PmsiYear>> FindPmsiTables(
    const std::string& dir) {
  std::map<std::string, PmsiYear> years;
  std::error_code ec;
  std::filesystem::directory_iterator it(dir, ec);
  if (ec) {
    return absl::NotFoundError(
        absl::StrCat("cannot list directory ", dir, ": ", ec.message()));
  }
  for (; it != std::filesystem::directory_iterator(); it.increment(ec)) {
    if (ec) break;
    const std::string name = it->path().filename().string();
    const std::string upper = absl::AsciiStrToUpper(name);
    if (upper.size() != 12 || !absl::StartsWith(upper, "T_MCO") ||
        !absl::EndsWith(upper, ".CSV")) {
      continue;
    }
    const std::string tag = upper.substr(5, 2);
    const char table = upper[7];
    if (!(tag == "AA" || AllDigits(tag))) continue;
    std::string* slot = nullptr;
    switch (table) {
      case 'A':
        slot = &years[tag].a;
        break;
      case 'B':
        slot = &years[tag].b;
        break;
      case 'C':
        slot = &years[tag].c;
        break;
      case 'D':
        slot = &years[tag].d;
        break;
      default:
        continue;
    }
    const std::string path = it->path().string();
    if (!slot->empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("several files in ", dir, " are table ", upper, ": ",
                       BaseName(*slot), ", ", name));
    }
    *slot = path;
  }
  if (ec) {
    return absl::NotFoundError(
        absl::StrCat("cannot list directory ", dir, ": ", ec.message()));
  }
  return years;
}

class SndsLoad {
 public:
  SndsLoad(const std::string& dir, const LoadOptions& options,
           const SndsOptions& snds, SnapshotBuilder* builder,
           LoadReport* report)
      : dir_(dir),
        snds_(snds),
        builder_(builder),
        report_(report),
        rejects_(options, report),
        future_(options, report) {}

  absl::Status Run() {
    PASSERELLE_RETURN_IF_ERROR(LoadBeneficiaries());
    PASSERELLE_ASSIGN_OR_RETURN(const auto years, FindPmsiTables(dir_));
    for (const auto& [tag, year] : years) {
      PASSERELLE_RETURN_IF_ERROR(LoadPmsiYear(tag, year));
    }
    PASSERELLE_RETURN_IF_ERROR(LoadDcir());
    report_->events = builder_->events();
    AddNotes();
    return future_.Finish();
  }

 private:
  // A PMSI stay as T_MCOaaC links it.
  struct Stay {
    enum State { kLinked, kRejected, kRepeated };
    State state = kRejected;
    int64_t person = 0;
    int32_t day = 0;
    int64_t line = 0;  // Of its T_MCOaaC row.
  };
  // ER_PHA_F rows waiting for their ER_PRS_F row.
  struct PharmacyRow {
    int64_t line;
    std::string atc;  // "" when the CIP13 has no known ATC code.
  };
  struct Prestation {
    std::vector<PharmacyRow> rows;
    int64_t prs_line = 0;  // 0 until its ER_PRS_F row is read.
  };

  // One IR_BEN_R row, kept until every row is read (rows of one person may
  // be anywhere in the file).
  struct Beneficiary {
    std::string pair;  // PersonKey(BEN_NIR_PSA, BEN_RNG_GEM).
    std::string psa;
    std::string ano;  // BEN_IDT_ANO; empty when absent.
    v1::Sex sex = v1::SEX_UNKNOWN;
    int year = 0;
    int32_t death = std::numeric_limits<int32_t>::min();  // min(): alive.
  };

  absl::Status LoadBeneficiaries() {
    PASSERELLE_ASSIGN_OR_RETURN(const std::string path,
                                FindTable(dir_, "IR_BEN_R"));
    PASSERELLE_ASSIGN_OR_RETURN(
        SourceTable table, SourceTable::Open(path, {{{"BEN_NIR_PSA"}, true},
                                                    {{"BEN_RNG_GEM"}, true},
                                                    {{"BEN_SEX_COD"}, true},
                                                    {{"BEN_NAI_ANN"}, true},
                                                    {{"BEN_NAI_MOI"}, false},
                                                    {{"BEN_DCD_DTE"}, false},
                                                    {{"BEN_IDT_ANO"}, false}}));
    std::vector<Beneficiary> rows;
    absl::flat_hash_set<std::string> pairs_seen;
    PASSERELLE_RETURN_IF_ERROR(table.ForEach(
        [&](const std::vector<absl::string_view>& f,
            int64_t line) -> absl::Status {
          auto reject = [&](std::string reason) {
            return rejects_.Reject(path, line, std::move(reason));
          };
          const absl::string_view psa = Strip(f[0]);
          if (psa.empty()) return reject("BEN_NIR_PSA is empty");
          if (Strip(f[1]).empty()) return reject("BEN_RNG_GEM is empty");
          Beneficiary b;
          b.pair = PersonKey(psa, f[1]);
          b.psa = std::string(psa);
          if (pairs_seen.contains(b.pair)) {
            return reject("duplicate beneficiary (BEN_NIR_PSA, BEN_RNG_GEM)");
          }
          const absl::string_view sex_code = Strip(f[2]);
          b.sex = sex_code == "1"   ? v1::SEX_MALE
                  : sex_code == "2" ? v1::SEX_FEMALE
                                    : v1::SEX_UNKNOWN;
          if (!absl::SimpleAtoi(Strip(f[3]), &b.year) || b.year < 1800 ||
              b.year > 2300) {
            return reject(absl::StrCat("BEN_NAI_ANN \"", Strip(f[3]),
                                       "\" is missing or out of range"));
          }
          const absl::string_view month_text = Strip(f[4]);
          int month = 0;
          if (!month_text.empty() &&
              (!absl::SimpleAtoi(month_text, &month) || month < 0 ||
               (month > 12 && month != 99))) {
            return reject(absl::StrCat("BEN_NAI_MOI \"", month_text,
                                       "\" is not a month"));
          }
          if (month >= 1 && month <= 12) ++birth_months_;
          const absl::string_view death_text = Strip(f[5]);
          if (!death_text.empty()) {
            absl::StatusOr<int32_t> day = ParseSndsDate(death_text);
            if (!day.ok()) {
              return reject(
                  absl::StrCat("BEN_DCD_DTE: ", day.status().message()));
            }
            int y, m, d;
            CivilFromDays(*day, &y, &m, &d);
            if (y != 1600) b.death = *day;  // 1600-01-01 means alive.
          }
          if (table.has(6)) b.ano = std::string(Strip(f[6]));
          pairs_seen.insert(b.pair);
          rows.push_back(std::move(b));
          return absl::OkStatus();
        },
        &rejects_));
    report_->tables.push_back(path);
    PASSERELLE_RETURN_IF_ERROR(AddPersons(rows, table.has(6)));
    return absl::OkStatus();
  }

  // The unit counted is the person behind BEN_IDT_ANO: every
  // (BEN_NIR_PSA, BEN_RNG_GEM) pair with the same BEN_IDT_ANO is one
  // person (a person changes NIR or rank over a life: a birth-number NIR
  // after a provisional one, an own NIR after an opening-right holder's). A
  // pair without BEN_IDT_ANO is a person of its own, and the report says how
  // many there are: for them the unit is the pair, and one person holding
  // several such pairs counts once per pair. Pairs of one person that
  // disagree: sex differs -> unknown; birth year differs -> the earliest;
  // death dates differ -> the earliest (a person with any pair deceased is
  // deceased). Each disagreement is counted in the report.
  absl::Status AddPersons(const std::vector<Beneficiary>& rows,
                          bool has_ano_column) {
    struct Person {
      int64_t dense = 0;
      v1::Sex sex = v1::SEX_UNKNOWN;
      int year = 0;
      int32_t death = std::numeric_limits<int32_t>::min();
      int pairs = 0;
      bool sex_conflict = false, year_conflict = false, death_conflict = false;
    };
    std::vector<Person> persons;
    absl::flat_hash_map<std::string, int64_t> by_ano;
    for (const Beneficiary& b : rows) {
      int64_t index = static_cast<int64_t>(persons.size());
      if (!b.ano.empty()) {
        auto [it, inserted] = by_ano.emplace(b.ano, index);
        if (!inserted) index = it->second;
      } else {
        ++unmapped_pairs_;
      }
      if (index == static_cast<int64_t>(persons.size())) {
        Person p;
        p.dense = index;
        p.sex = b.sex;
        p.year = b.year;
        p.death = b.death;
        persons.push_back(p);
      } else {
        Person& p = persons[static_cast<size_t>(index)];
        ++merged_pairs_;
        if (b.sex != p.sex) {
          p.sex_conflict = true;
          p.sex = v1::SEX_UNKNOWN;
        }
        if (b.year != p.year) {
          p.year_conflict = true;
          p.year = std::min(p.year, b.year);
        }
        if (b.death != p.death) {
          p.death_conflict = true;
          const int32_t alive = std::numeric_limits<int32_t>::min();
          p.death = p.death == alive   ? b.death
                    : b.death == alive ? p.death
                                       : std::min(p.death, b.death);
        }
      }
      ++persons[static_cast<size_t>(index)].pairs;
      persons_.emplace(b.pair, index);
      auto [it, inserted] = by_psa_.emplace(b.psa, index);
      // A BEN_NIR_PSA held by several ranks of one person is not ambiguous.
      if (!inserted && it->second != index) it->second = kAmbiguous;
    }
    for (const Person& p : persons) {
      // The contract: a birth known to the year only is on 1 July.
      PASSERELLE_RETURN_IF_ERROR(
          builder_->AddPerson(p.dense, BirthKey(p.year, 0, 0), p.sex));
      if (p.pairs > 1) ++merged_persons_;
      sex_conflicts_ += p.sex_conflict;
      year_conflicts_ += p.year_conflict;
      death_conflicts_ += p.death_conflict;
    }
    builder_->FinishPersons();
    report_->persons = builder_->persons();
    for (const Person& p : persons) {
      if (p.death != std::numeric_limits<int32_t>::min()) {
        PASSERELLE_RETURN_IF_ERROR(builder_->MarkDeceased(p.dense, p.death));
      }
    }
    has_ano_column_ = has_ano_column;
    return absl::OkStatus();
  }

  absl::Status LoadPmsiYear(const std::string& tag, const PmsiYear& year) {
    if (year.c.empty()) {
      for (const std::string* p : {&year.b, &year.d, &year.a}) {
        if (!p->empty()) {
          return absl::InvalidArgumentError(absl::StrCat(
              *p, ": needs T_MCO", tag == "AA" ? "aa" : tag,
              "C.csv (NIR_ANO_17, entry date) to link its stays to "
              "beneficiaries"));
        }
      }
      return absl::OkStatus();
    }
    absl::flat_hash_map<std::string, Stay> stays;
    PASSERELLE_RETURN_IF_ERROR(ReadLinkage(year.c, &stays));
    const std::string c_name = BaseName(year.c);

    // Resolves a stay for a row of B, D or A; sets `reason` when it cannot.
    auto link = [&](const std::vector<absl::string_view>& f,
                    std::string* reason) -> const Stay* {
      const absl::string_view eta = Strip(f[0]), rsa = Strip(f[1]);
      if (eta.empty() || rsa.empty()) {
        *reason = "ETA_NUM or RSA_NUM is empty";
        return nullptr;
      }
      auto it = stays.find(absl::StrCat(eta, "\x1f", rsa));
      if (it == stays.end()) {
        *reason = absl::StrCat("stay (ETA_NUM, RSA_NUM) has no ", c_name,
                               " row: not linked to a beneficiary");
        return nullptr;
      }
      switch (it->second.state) {
        case Stay::kLinked:
          return &it->second;
        case Stay::kRejected:
          *reason = absl::StrCat("stay's ", c_name, " row (line ",
                                 it->second.line, ") was rejected");
          return nullptr;
        case Stay::kRepeated:
          *reason = absl::StrCat("stay (ETA_NUM, RSA_NUM) is on several ",
                                 c_name, " rows: ambiguous");
          return nullptr;
      }
      return nullptr;
    };

    // Stays: main and related diagnoses.
    if (!year.b.empty()) {
      PASSERELLE_ASSIGN_OR_RETURN(
          SourceTable table, SourceTable::Open(year.b, {{{"ETA_NUM"}, true},
                                                        {{"RSA_NUM"}, true},
                                                        {{"DGN_PAL"}, true},
                                                        {{"DGN_REL"}, false}}));
      absl::flat_hash_map<std::string, int64_t> seen;
      PASSERELLE_RETURN_IF_ERROR(table.ForEach(
          [&](const std::vector<absl::string_view>& f,
              int64_t line) -> absl::Status {
            auto reject = [&](std::string reason) {
              return rejects_.Reject(year.b, line, std::move(reason));
            };
            std::string reason;
            const Stay* stay = link(f, &reason);
            if (stay == nullptr) return reject(reason);
            auto [it, inserted] = seen.emplace(
                absl::StrCat(Strip(f[0]), "\x1f", Strip(f[1])), line);
            if (!inserted) {
              return reject(
                  absl::StrCat("stay already described at line ", it->second));
            }
            std::string main, related;
            if (!Cim10(f[2], "DGN_PAL", /*required=*/true, &main, &reason) ||
                !Cim10(f[3], "DGN_REL", /*required=*/false, &related,
                       &reason)) {
              return reject(reason);
            }
            PASSERELLE_RETURN_IF_ERROR(Event(year.b, line, *stay, stay->day,
                                             v1::DOMAIN_CONDITION, "cim10",
                                             main));
            if (!related.empty()) {
              PASSERELLE_RETURN_IF_ERROR(Event(year.b, line, *stay, stay->day,
                                               v1::DOMAIN_CONDITION, "cim10",
                                               related));
            }
            return absl::OkStatus();
          },
          &rejects_));
      report_->tables.push_back(year.b);
    }

    // Secondary diagnoses.
    if (!year.d.empty()) {
      PASSERELLE_ASSIGN_OR_RETURN(
          SourceTable table,
          SourceTable::Open(year.d, {{{"ETA_NUM"}, true},
                                     {{"RSA_NUM"}, true},
                                     {{"ASS_DGN", "DGN_ASS"}, true}}));
      const std::string column = table.column(2);
      PASSERELLE_RETURN_IF_ERROR(table.ForEach(
          [&](const std::vector<absl::string_view>& f,
              int64_t line) -> absl::Status {
            std::string reason, code;
            const Stay* stay = link(f, &reason);
            if (stay == nullptr ||
                !Cim10(f[2], column, /*required=*/true, &code, &reason)) {
              return rejects_.Reject(year.d, line, reason);
            }
            return Event(year.d, line, *stay, stay->day, v1::DOMAIN_CONDITION,
                         "cim10", code);
          },
          &rejects_));
      report_->tables.push_back(year.d);
    }

    // CCAM procedures.
    if (!year.a.empty()) {
      PASSERELLE_ASSIGN_OR_RETURN(
          SourceTable table,
          SourceTable::Open(year.a, {{{"ETA_NUM"}, true},
                                     {{"RSA_NUM"}, true},
                                     {{"CDC_ACT"}, true},
                                     {{"ENT_DAT_DEL"}, false}}));
      PASSERELLE_RETURN_IF_ERROR(table.ForEach(
          [&](const std::vector<absl::string_view>& f,
              int64_t line) -> absl::Status {
            auto reject = [&](std::string reason) {
              return rejects_.Reject(year.a, line, std::move(reason));
            };
            std::string reason;
            const Stay* stay = link(f, &reason);
            if (stay == nullptr) return reject(reason);
            const std::string code = query::NormalizeCode("ccam", f[2]);
            if (code.empty()) return reject("CDC_ACT is empty");
            if (!query::IsValidCode("ccam", code)) {
              return reject(absl::StrCat("CDC_ACT \"", Strip(f[2]),
                                         "\" is not a valid CCAM code"));
            }
            int delay = 0;
            const absl::string_view delay_text = Strip(f[3]);
            if (!delay_text.empty() && (!absl::SimpleAtoi(delay_text, &delay) ||
                                        delay < 0 || delay > 36600)) {
              return reject(absl::StrCat("ENT_DAT_DEL \"", delay_text,
                                         "\" is not a number of days"));
            }
            return Event(year.a, line, *stay, stay->day + delay,
                         v1::DOMAIN_PROCEDURE, "ccam", code);
          },
          &rejects_));
      report_->tables.push_back(year.a);
    }
    return absl::OkStatus();
  }

  // Reads T_MCOaaC into `stays`, rejecting the rows it cannot link.
  absl::Status ReadLinkage(const std::string& path,
                           absl::flat_hash_map<std::string, Stay>* stays) {
    std::vector<ColumnSpec> columns = {{{"ETA_NUM"}, true},
                                       {{"RSA_NUM"}, true},
                                       {{"NIR_ANO_17"}, true},
                                       {{"EXE_SOI_DTD"}, false},
                                       {{"ENT_DAT"}, false}};
    constexpr size_t kFirstCode = 5;
    for (const std::string& code : LinkageReturnCodes()) {
      columns.push_back({{code}, false});
    }
    PASSERELLE_ASSIGN_OR_RETURN(SourceTable table,
                                SourceTable::Open(path, columns));
    if (!table.has(3) && !table.has(4)) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": required column \"EXE_SOI_DTD\" or \"ENT_DAT\" is missing"));
    }
    PASSERELLE_RETURN_IF_ERROR(table.ForEach(
        [&](const std::vector<absl::string_view>& f,
            int64_t line) -> absl::Status {
          auto reject = [&](int64_t at, std::string reason) {
            return rejects_.Reject(path, at, std::move(reason));
          };
          const absl::string_view eta = Strip(f[0]), rsa = Strip(f[1]);
          if (eta.empty() || rsa.empty()) {
            return reject(line, "ETA_NUM or RSA_NUM is empty");
          }
          std::string key = absl::StrCat(eta, "\x1f", rsa);
          if (auto it = stays->find(key); it != stays->end()) {
            Stay& first = it->second;
            if (first.state == Stay::kLinked) {
              PASSERELLE_RETURN_IF_ERROR(reject(
                  first.line, absl::StrCat("stay (ETA_NUM, RSA_NUM) is also "
                                           "at line ",
                                           line, ": ambiguous")));
            }
            first.state = Stay::kRepeated;
            return reject(line, absl::StrCat("stay (ETA_NUM, RSA_NUM) is "
                                             "already at line ",
                                             first.line, ": ambiguous"));
          }
          Stay stay;
          stay.line = line;
          std::string reason = Link(table, f, kFirstCode, &stay);
          stay.state = reason.empty() ? Stay::kLinked : Stay::kRejected;
          stays->emplace(std::move(key), stay);
          if (!reason.empty()) return reject(line, std::move(reason));
          return absl::OkStatus();
        },
        &rejects_));
    report_->tables.push_back(path);
    return absl::OkStatus();
  }

  // Fills stay->person and stay->day from a T_MCOaaC row, or returns why
  // the row cannot be linked.
  std::string Link(const SourceTable& table,
                   const std::vector<absl::string_view>& f, size_t first_code,
                   Stay* stay) {
    if (snds_.require_valid_linkage_codes) {
      for (size_t i = 0; i < LinkageReturnCodes().size(); ++i) {
        const absl::string_view v = Strip(f[first_code + i]);
        if (table.has(first_code + i) && !v.empty() && v != "0") {
          return absl::StrCat("linkage return code ", LinkageReturnCodes()[i],
                              "=", v, " (patient chaining not valid)");
        }
      }
    }
    const absl::string_view nir = Strip(f[2]);
    if (nir.empty()) return "NIR_ANO_17 is empty";
    auto it = by_psa_.find(nir);
    if (it == by_psa_.end()) {
      return "NIR_ANO_17 matches no BEN_NIR_PSA in IR_BEN_R";
    }
    if (it->second == kAmbiguous) {
      return "NIR_ANO_17 matches several beneficiaries (BEN_RNG_GEM); the "
             "PMSI has no twin rank to tell them apart";
    }
    stay->person = it->second;
    const absl::string_view dtd = Strip(f[3]), ent = Strip(f[4]);
    absl::StatusOr<int32_t> day = absl::InvalidArgumentError(
        "no entry date (EXE_SOI_DTD and ENT_DAT empty)");
    if (!dtd.empty()) {
      day = ParseSndsDate(dtd);
      if (!day.ok())
        return absl::StrCat("EXE_SOI_DTD: ", day.status().message());
    } else if (!ent.empty()) {
      day = ParseDdmmyyyy(ent);
      if (!day.ok()) return absl::StrCat("ENT_DAT: ", day.status().message());
    } else {
      return std::string(day.status().message());
    }
    stay->day = *day;
    return "";
  }

  // A CIM-10 code from `text`; false (with `reason`) when malformed, or
  // empty while required.
  static bool Cim10(absl::string_view text, absl::string_view column,
                    bool required, std::string* code, std::string* reason) {
    *code = query::NormalizeCode("cim10", text);
    if (code->empty()) {
      if (required) *reason = absl::StrCat(column, " is empty");
      return !required;
    }
    if (!query::IsValidCode("cim10", *code)) {
      *reason = absl::StrCat(column, " \"", Strip(text),
                             "\" is not a valid CIM-10 code");
      return false;
    }
    return true;
  }

  // An event of `stay` read at file:line.
  absl::Status Event(absl::string_view file, int64_t line, const Stay& stay,
                     int32_t day, v1::Domain domain,
                     absl::string_view vocabulary, absl::string_view code) {
    if (!future_.Keep(file, line, day)) return absl::OkStatus();
    PASSERELLE_RETURN_IF_ERROR(
        builder_->BeginEvent(stay.person, day, kNoValue));
    builder_->AddEventCode(domain, vocabulary, code);
    return absl::OkStatus();
  }

  absl::Status LoadDcir() {
    PASSERELLE_ASSIGN_OR_RETURN(const std::string prs_path,
                                FindOptionalTable(dir_, "ER_PRS_F"));
    PASSERELLE_ASSIGN_OR_RETURN(const std::string pha_path,
                                FindOptionalTable(dir_, "ER_PHA_F"));
    if (pha_path.empty()) {
      if (!prs_path.empty()) {
        report_->notes.push_back(
            "ER_PRS_F.csv without ER_PHA_F.csv: prestations carry no drug "
            "code and were not loaded");
      }
      return absl::OkStatus();
    }
    if (prs_path.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(pha_path,
                       ": needs ER_PRS_F.csv (beneficiary and date of each "
                       "dispensing)"));
    }
    absl::flat_hash_map<std::string, std::string> atc_of_cip;
    PASSERELLE_RETURN_IF_ERROR(LoadPharmacyReferential(&atc_of_cip));

    // ER_PHA_F first: the dispensings, by prestation key.
    const size_t nkeys = DcirJoinColumns().size();
    absl::flat_hash_map<std::string, Prestation> prestations;
    {
      std::vector<ColumnSpec> columns;
      for (const std::string& c : DcirJoinColumns())
        columns.push_back({{c}, true});
      columns.push_back({{"PHA_PRS_C13", "PHA_CIP_C13"}, true});
      columns.push_back({{"PHA_ATC_C07"}, false});
      columns.push_back({{"PHA_ACT_QSN"}, false});
      PASSERELLE_ASSIGN_OR_RETURN(SourceTable table,
                                  SourceTable::Open(pha_path, columns));
      const bool has_atc = table.has(nkeys + 1);
      PASSERELLE_RETURN_IF_ERROR(table.ForEach(
          [&](const std::vector<absl::string_view>& f,
              int64_t line) -> absl::Status {
            auto reject = [&](std::string reason) {
              return rejects_.Reject(pha_path, line, std::move(reason));
            };
            const absl::string_view quantity = Strip(f[nkeys + 2]);
            if (!quantity.empty()) {
              double q = 0;
              if (!absl::SimpleAtod(quantity, &q)) {
                return reject(absl::StrCat("PHA_ACT_QSN \"", quantity,
                                           "\" is not a number"));
              }
              if (q <= 0) {
                ++reversals_;
                return absl::OkStatus();
              }
            }
            std::string atc;
            const absl::string_view atc_text = Strip(f[nkeys + 1]);
            if (has_atc && !atc_text.empty()) {
              atc = query::NormalizeCode("atc", atc_text);
              if (!query::IsValidCode("atc", atc)) {
                return reject(absl::StrCat("PHA_ATC_C07 \"", atc_text,
                                           "\" is not a valid ATC code"));
              }
            } else if (auto it = atc_of_cip.find(Strip(f[nkeys]));
                       it != atc_of_cip.end()) {
              atc = it->second;
            }
            prestations[JoinKey(f, 0, nkeys)].rows.push_back({line, atc});
            return absl::OkStatus();
          },
          &rejects_));
      report_->tables.push_back(pha_path);
    }

    // ER_PRS_F: the beneficiary and date of each prestation.
    {
      std::vector<ColumnSpec> columns;
      for (const std::string& c : DcirJoinColumns())
        columns.push_back({{c}, true});
      columns.push_back({{"BEN_NIR_PSA"}, true});
      columns.push_back({{"BEN_RNG_GEM"}, true});
      columns.push_back({{"EXE_SOI_DTD"}, true});
      columns.push_back({{"DPN_QLF"}, false});
      PASSERELLE_ASSIGN_OR_RETURN(SourceTable table,
                                  SourceTable::Open(prs_path, columns));
      const std::string prs_name = BaseName(prs_path);
      PASSERELLE_RETURN_IF_ERROR(table.ForEach(
          [&](const std::vector<absl::string_view>& f,
              int64_t line) -> absl::Status {
            auto it = prestations.find(JoinKey(f, 0, nkeys));
            if (it == prestations.end())
              return absl::OkStatus();  // Not pharmacy.
            Prestation& p = it->second;
            if (p.prs_line != 0) {
              return rejects_.Reject(
                  prs_path, line,
                  absl::StrCat("prestation key (DCIR join columns) already at "
                               "line ",
                               p.prs_line, ": ambiguous"));
            }
            p.prs_line = line;
            if (Strip(f[nkeys + 3]) == "71") {
              informational_ += static_cast<int64_t>(p.rows.size());
              return absl::OkStatus();
            }
            auto reject_all = [&](absl::string_view why) -> absl::Status {
              for (const PharmacyRow& row : p.rows) {
                PASSERELLE_RETURN_IF_ERROR(
                    rejects_.Reject(pha_path, row.line,
                                    absl::StrCat("its prestation (", prs_name,
                                                 " line ", line, ") ", why)));
              }
              return absl::OkStatus();
            };
            auto person = persons_.find(PersonKey(f[nkeys], f[nkeys + 1]));
            if (person == persons_.end()) {
              return reject_all(
                  "names a beneficiary (BEN_NIR_PSA, BEN_RNG_GEM) not in "
                  "IR_BEN_R");
            }
            absl::StatusOr<int32_t> day = ParseSndsDate(f[nkeys + 2]);
            if (!day.ok()) {
              return reject_all(
                  absl::StrCat("has EXE_SOI_DTD: ", day.status().message()));
            }
            for (const PharmacyRow& row : p.rows) {
              if (row.atc.empty()) {
                ++unmapped_cip_;
                continue;
              }
              if (!future_.Keep(pha_path, row.line, *day)) continue;
              PASSERELLE_RETURN_IF_ERROR(
                  builder_->BeginEvent(person->second, *day, kNoValue));
              builder_->AddEventCode(v1::DOMAIN_DRUG, "atc", row.atc);
            }
            return absl::OkStatus();
          },
          &rejects_));
      report_->tables.push_back(prs_path);
    }

    // Dispensings whose prestation never came.
    std::vector<int64_t> orphans;
    for (const auto& [key, p] : prestations) {
      if (p.prs_line != 0) continue;
      for (const PharmacyRow& row : p.rows) orphans.push_back(row.line);
    }
    std::sort(orphans.begin(), orphans.end());
    for (int64_t line : orphans) {
      PASSERELLE_RETURN_IF_ERROR(rejects_.Reject(
          pha_path, line,
          absl::StrCat("no ", BaseName(prs_path),
                       " row with its prestation key (DCIR join columns)")));
    }
    return absl::OkStatus();
  }

  // IR_PHA_R.csv, when present: CIP13 -> ATC.
  absl::Status LoadPharmacyReferential(
      absl::flat_hash_map<std::string, std::string>* atc_of_cip) {
    PASSERELLE_ASSIGN_OR_RETURN(const std::string path,
                                FindOptionalTable(dir_, "IR_PHA_R"));
    if (path.empty()) return absl::OkStatus();
    PASSERELLE_ASSIGN_OR_RETURN(
        SourceTable table,
        SourceTable::Open(path, {{{"PHA_CIP_C13"}, true},
                                 {{"PHA_ATC_C07", "PHA_ATC_CLA"}, true}}));
    PASSERELLE_RETURN_IF_ERROR(table.ForEach(
        [&](const std::vector<absl::string_view>& f,
            int64_t line) -> absl::Status {
          const absl::string_view cip = Strip(f[0]);
          const std::string atc = query::NormalizeCode("atc", f[1]);
          if (cip.empty() || atc.empty()) return absl::OkStatus();
          if (!query::IsValidCode("atc", atc)) {
            return rejects_.Reject(
                path, line,
                absl::StrCat("ATC code \"", Strip(f[1]), "\" is not valid"));
          }
          auto [it, inserted] = atc_of_cip->emplace(std::string(cip), atc);
          if (!inserted && it->second != atc) {
            return rejects_.Reject(path, line,
                                   "PHA_CIP_C13 already has another ATC code");
          }
          return absl::OkStatus();
        },
        &rejects_));
    report_->tables.push_back(path);
    return absl::OkStatus();
  }

  void AddNotes() {
    // The unit of every count (privacy.md requirement 1), always stated.
    report_->notes.push_back(absl::StrCat(
        "persons are keyed by BEN_IDT_ANO: ", merged_pairs_,
        " (BEN_NIR_PSA, BEN_RNG_GEM) pairs were merged into ", merged_persons_,
        " persons holding several pairs; ", unmapped_pairs_,
        " pairs have no BEN_IDT_ANO",
        has_ano_column_ ? "" : " (IR_BEN_R has no BEN_IDT_ANO column)",
        unmapped_pairs_ > 0
            ? " and count as persons of their own: for them the unit is the "
              "pair, and a person holding several of them counts once per "
              "pair"
            : ""));
    if (sex_conflicts_ + year_conflicts_ + death_conflicts_ > 0) {
      report_->notes.push_back(
          absl::StrCat("persons whose pairs disagree: ", sex_conflicts_,
                       " on sex (loaded as unknown), ", year_conflicts_,
                       " on birth year (the earliest kept), ", death_conflicts_,
                       " on death date (the earliest kept)"));
    }
    if (birth_months_ > 0) {
      report_->notes.push_back(absl::StrCat(
          birth_months_,
          " beneficiaries have a birth month (BEN_NAI_MOI); the model keeps "
          "the year only, so ages count from 1 July of BEN_NAI_ANN"));
    }
    if (unmapped_cip_ > 0) {
      report_->notes.push_back(absl::StrCat(
          unmapped_cip_,
          " dispensings have a CIP13 code with no ATC code (no PHA_ATC_C07 "
          "column, no IR_PHA_R.csv row) and were not loaded"));
    }
    if (reversals_ > 0) {
      report_->notes.push_back(absl::StrCat(
          reversals_,
          " ER_PHA_F rows with PHA_ACT_QSN <= 0 (reversals) are not "
          "dispensings and were not loaded"));
    }
    if (informational_ > 0) {
      report_->notes.push_back(absl::StrCat(
          informational_,
          " ER_PHA_F rows belong to prestations with DPN_QLF 71 (sent for "
          "information only) and were not loaded"));
    }
  }

  static constexpr int64_t kAmbiguous = -1;

  const std::string dir_;
  const SndsOptions snds_;
  SnapshotBuilder* const builder_;
  LoadReport* const report_;
  RejectCounter rejects_;
  FutureEventCheck future_;
  // (BEN_NIR_PSA, BEN_RNG_GEM) -> dense person number (several pairs of one
  // BEN_IDT_ANO share it); identifiers are
  // used only while loading.
  absl::flat_hash_map<std::string, int64_t> persons_;
  // BEN_NIR_PSA -> person, or kAmbiguous when ranks of several persons
  // share it.
  absl::flat_hash_map<std::string, int64_t> by_psa_;
  int64_t birth_months_ = 0;
  bool has_ano_column_ = false;
  int64_t merged_pairs_ = 0;    // Pairs joined to an earlier one's person.
  int64_t merged_persons_ = 0;  // Persons holding more than one pair.
  int64_t unmapped_pairs_ = 0;  // Pairs without BEN_IDT_ANO.
  int64_t sex_conflicts_ = 0, year_conflicts_ = 0, death_conflicts_ = 0;
  int64_t unmapped_cip_ = 0;
  int64_t reversals_ = 0;
  int64_t informational_ = 0;
};

}  // namespace

absl::StatusOr<int32_t> ParseSndsDate(absl::string_view text) {
  constexpr absl::string_view kExpected =
      "YYYY-MM-DD, DD/MM/YYYY or DDMONYYYY[:hh:mm:ss]";
  const absl::string_view s = Strip(text);
  if (s.size() >= 10 && s[4] == '-' && s[7] == '-') {
    absl::StatusOr<int32_t> day = ParseDay(s);
    if (!day.ok()) return BadDate(s, kExpected);
    return day;
  }
  int y = 0, m = 0, d = 0;
  if (s.size() >= 10 && s[2] == '/' && s[5] == '/' &&
      (s.size() == 10 || s[10] == ' ' || s[10] == ':')) {
    if (!AllDigits(s.substr(0, 2)) || !AllDigits(s.substr(3, 2)) ||
        !AllDigits(s.substr(6, 4))) {
      return BadDate(s, kExpected);
    }
    (void)absl::SimpleAtoi(s.substr(0, 2), &d);
    (void)absl::SimpleAtoi(s.substr(3, 2), &m);
    (void)absl::SimpleAtoi(s.substr(6, 4), &y);
  } else if (s.size() >= 9 && AllDigits(s.substr(0, 2)) &&
             AllDigits(s.substr(5, 4)) &&
             (s.size() == 9 || s[9] == ':' || s[9] == ' ')) {
    m = MonthFromAbbrev(s.substr(2, 3));
    (void)absl::SimpleAtoi(s.substr(0, 2), &d);
    (void)absl::SimpleAtoi(s.substr(5, 4), &y);
    if (m == 0) return BadDate(s, kExpected);
  } else {
    return BadDate(s, kExpected);
  }
  absl::StatusOr<int32_t> day =
      ParseDay(absl::StrFormat("%04d-%02d-%02d", y, m, d));
  if (!day.ok()) return BadDate(s, kExpected);
  return day;
}

absl::StatusOr<int32_t> ParseDdmmyyyy(absl::string_view text) {
  const absl::string_view s = Strip(text);
  if (s.size() != 8 || !AllDigits(s)) return BadDate(s, "DDMMYYYY");
  absl::StatusOr<int32_t> day = ParseDay(
      absl::StrCat(s.substr(4, 4), "-", s.substr(2, 2), "-", s.substr(0, 2)));
  if (!day.ok()) return BadDate(s, "DDMMYYYY");
  return day;
}

absl::Status LoadSndsDirectory(const std::string& dir,
                               const LoadOptions& options,
                               SnapshotBuilder* builder, LoadReport* report,
                               const SndsOptions& snds) {
  if (!options.vocabulary_rules_file.empty()) {
    return absl::InvalidArgumentError(
        "vocabulary rules apply to OMOP exports only; SNDS columns carry "
        "their vocabulary");
  }
  return SndsLoad(dir, options, snds, builder, report).Run();
}

}  // namespace passerelle::node
