// Rendering of results for people (aligned tables with totals) and programs
// (JSON, CSV).
#ifndef PASSERELLE_CLI_FORMAT_H_
#define PASSERELLE_CLI_FORMAT_H_

#include <string>

#include "absl/status/statusor.h"
#include "passerelle/v1/gateway.pb.h"
#include "passerelle/v1/node.pb.h"

namespace passerelle::cli {

enum class OutputFormat { kTable, kJson, kCsv };

absl::StatusOr<OutputFormat> ParseOutputFormat(const std::string& name);

// `passerelle node count`: exact counts at one site.
std::string FormatNodeCount(const v1::CountResponse& response,
                            OutputFormat format);
// `passerelle query`: per-site and combined released cells.
std::string FormatQueryResponse(const v1::QueryResponse& response,
                                OutputFormat format);

// A JSON string literal with escapes.
std::string JsonQuote(const std::string& s);

}  // namespace passerelle::cli

#endif  // PASSERELLE_CLI_FORMAT_H_
