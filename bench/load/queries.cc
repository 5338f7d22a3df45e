#include "bench/load/queries.h"

#include <fstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/civil_time.h"

namespace passerelle::bench {
namespace {

// Codes of the synthetic catalogue (synth/catalog.cc), so every query
// touches real postings: each ICD-10 prefix is paired with a drug for the
// sequence shape.
constexpr const char* kConditions[] = {"E11", "I10", "E78", "E66", "I25",
                                       "I48", "I50", "N18", "E10"};
constexpr const char* kDrugs[] = {"A10BA02", "C09AA*",  "C08CA01",
                                  "A10B*",   "C07AB07", "C09CA*",
                                  "C03AA03", "A10AE04", "A10AB*"};
static_assert(sizeof(kConditions) == sizeof(kDrugs));
constexpr uint64_t kCodes = sizeof(kConditions) / sizeof(kConditions[0]);
constexpr const char* kSexes[] = {"female", "male"};
constexpr uint64_t kSexCount = 2;
constexpr uint64_t kAgeLoCount = 50;  // lo in 18 .. 67
constexpr int kAgeLoMin = 18;
constexpr uint64_t kWidthCount = 40;  // width in 5 .. 44
constexpr int kWidthMin = 5;
// `as of` dates go back a day at a time from here; 200 years of them.
constexpr uint64_t kAsOfCount = 200 * 365;
const absl::CivilDay kAsOfBase(2025, 12, 31);

std::string AsOf(uint64_t k) {
  const absl::CivilDay d = kAsOfBase - static_cast<absl::civil_diff_t>(k);
  return absl::StrFormat("%04d-%02d-%02d", d.year(), d.month(), d.day());
}

class DefaultMix : public QuerySource {
 public:
  explicit DefaultMix(std::vector<Shape> shapes) : shapes_(std::move(shapes)) {}

  std::string Query(uint64_t i) const override {
    const Shape shape = shapes_[i % shapes_.size()];
    uint64_t j = i / shapes_.size();
    const uint64_t code = j % kCodes;
    j /= kCodes;
    const uint64_t sex = j % kSexCount;
    j /= kSexCount;
    const int lo = kAgeLoMin + static_cast<int>(j % kAgeLoCount);
    j /= kAgeLoCount;
    const int hi = lo + kWidthMin + static_cast<int>(j % kWidthCount);
    j /= kWidthCount;
    const std::string as_of = AsOf(j % kAsOfCount);
    const std::string ages = absl::StrCat("age between ", lo, " and ", hi);
    switch (shape) {
      case Shape::kCount:
        return absl::StrCat("condition icd10:", kConditions[code],
                            "* and sex = ", kSexes[sex], " and ", ages,
                            " as of ", as_of);
      case Shape::kBreakdown:
        // The sex digit picks the band width: 20 (7 bands) or 10 (12).
        return absl::StrCat("condition icd10:", kConditions[code], "* and ",
                            ages, " group by sex, age_band(",
                            sex == 0 ? 20 : 10, ") as of ", as_of);
      case Shape::kSequence:
        return absl::StrCat("condition icd10:", kConditions[code],
                            "* before drug atc:", kDrugs[code],
                            " within 365 days and sex = ", kSexes[sex], " and ",
                            ages, " as of ", as_of);
    }
    return "";
  }

  uint64_t DistinctCount() const override {
    return shapes_.size() * kCodes * kSexCount * kAgeLoCount * kWidthCount *
           kAsOfCount;
  }

 private:
  const std::vector<Shape> shapes_;
};

class ListSource : public QuerySource {
 public:
  ListSource(std::vector<std::string> queries, bool vary_as_of)
      : queries_(std::move(queries)), vary_as_of_(vary_as_of) {
    for (const std::string& q : queries_) {
      has_as_of_.push_back(
          absl::StrContains(absl::AsciiStrToLower(q), "as of"));
    }
  }

  std::string Query(uint64_t i) const override {
    const size_t n = queries_.size();
    const std::string& q = queries_[i % n];
    if (!vary_as_of_ || has_as_of_[i % n]) return q;
    return absl::StrCat(q, " as of ", AsOf((i / n) % kAsOfCount));
  }

  // Assuming the lines themselves are distinct queries: a line that already
  // says `as of` repeats from the second cycle on.
  uint64_t DistinctCount() const override {
    if (!vary_as_of_) return queries_.size();
    for (bool b : has_as_of_) {
      if (b) return queries_.size();
    }
    return queries_.size() * kAsOfCount;
  }

 private:
  const std::vector<std::string> queries_;
  const bool vary_as_of_;
  std::vector<bool> has_as_of_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<QuerySource>> NewDefaultMix(
    std::vector<Shape> shapes) {
  if (shapes.empty()) {
    return absl::InvalidArgumentError("query mix: no shape");
  }
  return std::make_unique<DefaultMix>(std::move(shapes));
}

absl::StatusOr<std::unique_ptr<QuerySource>> NewListSource(
    std::vector<std::string> queries, bool vary_as_of) {
  if (queries.empty()) {
    return absl::InvalidArgumentError("query list: no query");
  }
  return std::make_unique<ListSource>(std::move(queries), vary_as_of);
}

absl::StatusOr<std::vector<Shape>> ParseShapes(const std::string& text) {
  std::vector<Shape> out;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    part = absl::StripAsciiWhitespace(part);
    if (part == "count") {
      out.push_back(Shape::kCount);
    } else if (part == "breakdown") {
      out.push_back(Shape::kBreakdown);
    } else if (part == "sequence") {
      out.push_back(Shape::kSequence);
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "--mix: \"", part, "\" is not one of count, breakdown, sequence"));
    }
  }
  if (out.empty()) return absl::InvalidArgumentError("--mix: no shape");
  return out;
}

absl::StatusOr<std::vector<std::string>> ReadQueryFile(
    const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::vector<std::string> out;
  std::string line;
  while (std::getline(in, line)) {
    absl::string_view s = absl::StripAsciiWhitespace(line);
    if (s.empty() || s[0] == '#') continue;
    out.emplace_back(s);
  }
  if (out.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": no query"));
  }
  return out;
}

}  // namespace passerelle::bench
