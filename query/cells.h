// The fixed, public cell domains of breakdowns (`group by`). Cells never come
// from the data: every node and the gateway enumerate the same cells in the
// same order. All functions are pure and safe to call from any thread.
#ifndef PASSERELLE_QUERY_CELLS_H_
#define PASSERELLE_QUERY_CELLS_H_

#include <string>
#include <vector>

#include "passerelle/v1/query.pb.h"

namespace passerelle::query {

// Number of bands of `age_band(width)`: [0,W), [W,2W), ... and a last open
// band starting at the first multiple of W at or above 110 (W = 10: 12 bands,
// the last "110+"). 0 when width is outside [kMinBandWidth, kMaxBandWidth].
int AgeBandCount(int width);

// The band holding `age` (clamped into the last, open band); -1 when age is
// negative or the width is invalid.
int AgeBandIndex(int age, int width);

// "40-49" for a closed band, "110+" for the last one; "" when out of range.
std::string AgeBandLabel(int index, int width);

// {"female", "male", "other", "unknown"}: the sex cells, in cell order.
const std::vector<std::string>& SexLabels();

// The label of a sex; SEX_UNSPECIFIED and unknown enum values are "unknown".
std::string SexLabel(passerelle::v1::Sex sex);

// Every cell of the query's breakdown: the cross product of its group-by
// dimensions in group-by order, the last dimension varying fastest. Values:
// SexLabels(), AgeBandLabel(0..AgeBandCount-1), and `sites` as given. One
// empty key when there is no group by. The query must have passed
// ValidateQuery (a dimension of unknown kind or width yields no cells).
std::vector<passerelle::v1::CellKey> EnumerateCells(
    const passerelle::v1::Query& query, const std::vector<std::string>& sites);

// EnumerateCells(query, sites).size() for `site_count` sites, without
// building the keys.
size_t CountCells(const passerelle::v1::Query& query, size_t site_count);

}  // namespace passerelle::query

#endif  // PASSERELLE_QUERY_CELLS_H_
