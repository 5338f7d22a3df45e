// Rendering of results for people (aligned tables with totals) and programs
// (JSON, CSV).
#ifndef PASSERELLE_CLI_FORMAT_H_
#define PASSERELLE_CLI_FORMAT_H_

#include <string>

#include "absl/status/statusor.h"
#include "audit/expansion_text.h"
#include "passerelle/v1/gateway.pb.h"
#include "passerelle/v1/node.pb.h"

namespace passerelle::cli {

enum class OutputFormat { kTable, kJson, kCsv };

absl::StatusOr<OutputFormat> ParseOutputFormat(const std::string& name);

// `passerelle node count`: exact counts at one site, and the site's code
// expansion when the node reports one (table: the code expansion block;
// JSON: "expansion"; CSV: the cells only, as scripts read them).
std::string FormatNodeCount(const v1::CountResponse& response,
                            OutputFormat format);
struct FormatOptions {
  // Vocabulary labels hook: when set, a code of the query is shown with its
  // label in the code expansion lines ("icd10:E11* (Type 2 diabetes
  // mellitus) via ..."). Unset here: `passerelle query` does not link the
  // labels library (vocab/); wiring it means setting this in query_cmd.cc.
  audit::CodeLabelFn code_labels;
};

// `passerelle query`: per-site and combined released cells, and each
// site's code expansion (cli/expansion_format.h): in the table a "code
// expansion" block (with a WARNING line at the top when a site's
// vocabulary is unreached), in JSON an "expansion" object per site (the
// proto JSON of SiteExpansion), in CSV a second section after an empty
// line (ExpansionCsv).
std::string FormatQueryResponse(const v1::QueryResponse& response,
                                OutputFormat format,
                                const FormatOptions& options = {});
// `passerelle query --explain`: each site's code expansion, before
// anything runs. JSON is the proto JSON of ExplainResponse; CSV is
// ExpansionCsv alone.
std::string FormatExplainResponse(const v1::ExplainResponse& response,
                                  OutputFormat format,
                                  const FormatOptions& options = {});

// A JSON string literal with escapes.
std::string JsonQuote(const std::string& s);

}  // namespace passerelle::cli

#endif  // PASSERELLE_CLI_FORMAT_H_
