#include "query/cells.h"

#include "absl/strings/str_cat.h"
#include "query/limits.h"

namespace passerelle::query {
namespace {

namespace v1 = ::passerelle::v1;

// The open band starts at the first multiple of the width at or above this.
constexpr int kOpenBandFloor = 110;

}  // namespace

int AgeBandCount(int width) {
  if (width < kMinBandWidth || width > kMaxBandWidth) return 0;
  return (kOpenBandFloor + width - 1) / width + 1;
}

int AgeBandIndex(int age, int width) {
  const int count = AgeBandCount(width);
  if (count == 0 || age < 0) return -1;
  const int index = age / width;
  return index < count - 1 ? index : count - 1;
}

std::string AgeBandLabel(int index, int width) {
  const int count = AgeBandCount(width);
  if (index < 0 || index >= count) return "";
  const int lo = index * width;
  if (index == count - 1) return absl::StrCat(lo, "+");
  return absl::StrCat(lo, "-", lo + width - 1);
}

const std::vector<std::string>& SexLabels() {
  static const auto* const kLabels =
      new std::vector<std::string>{"female", "male", "other", "unknown"};
  return *kLabels;
}

std::string SexLabel(v1::Sex sex) {
  switch (sex) {
    case v1::SEX_FEMALE:
      return "female";
    case v1::SEX_MALE:
      return "male";
    case v1::SEX_OTHER:
      return "other";
    default:
      return "unknown";
  }
}

size_t CountCells(const v1::Query& query, size_t site_count) {
  size_t cells = 1;
  for (const v1::Dimension& dim : query.group_by()) {
    switch (dim.kind()) {
      case v1::Dimension::SEX:
        cells *= SexLabels().size();
        break;
      case v1::Dimension::AGE_BAND:
        cells *= static_cast<size_t>(AgeBandCount(dim.width()));
        break;
      case v1::Dimension::SITE:
        cells *= site_count;
        break;
      default:
        cells = 0;  // EnumerateCells gives no values, hence no cells.
        break;
    }
  }
  return cells;
}

std::vector<v1::CellKey> EnumerateCells(const v1::Query& query,
                                        const std::vector<std::string>& sites) {
  std::vector<v1::CellKey> cells(1);
  for (const v1::Dimension& dim : query.group_by()) {
    std::vector<std::string> values;
    std::string name;
    switch (dim.kind()) {
      case v1::Dimension::SEX:
        name = "sex";
        values = SexLabels();
        break;
      case v1::Dimension::AGE_BAND: {
        name = "age_band";
        const int count = AgeBandCount(dim.width());
        for (int i = 0; i < count; ++i) {
          values.push_back(AgeBandLabel(i, dim.width()));
        }
        break;
      }
      case v1::Dimension::SITE:
        name = "site";
        values = sites;
        break;
      default:
        break;
    }
    std::vector<v1::CellKey> next;
    next.reserve(cells.size() * values.size());
    for (const v1::CellKey& prefix : cells) {
      for (const std::string& value : values) {
        v1::CellKey& key = next.emplace_back(prefix);
        v1::DimensionValue* v = key.add_values();
        v->set_dimension(name);
        v->set_value(value);
      }
    }
    cells = std::move(next);
  }
  return cells;
}

}  // namespace passerelle::query
