// How the CLI shows each site's crosswalk expansion (query.proto
// SiteExpansion) in its three output forms; used by `passerelle query` and
// `passerelle query --explain` (cli/format.h). The one-line wording is
// audit/expansion_text.h's, shared with `passerelle audit show`.
#ifndef PASSERELLE_CLI_EXPANSION_FORMAT_H_
#define PASSERELLE_CLI_EXPANSION_FORMAT_H_

#include <string>
#include <vector>

#include "audit/expansion_text.h"
#include "passerelle/v1/gateway.pb.h"

namespace passerelle::cli {

// One site as the expansion renderers see it (a SiteResult of a query or a
// SiteExplanation of an explain).
struct SiteExpansionView {
  std::string site;
  v1::SiteStatus status = v1::SITE_STATUS_UNSPECIFIED;
  std::string reason;
  const v1::SiteExpansion* expansion = nullptr;
};
std::vector<SiteExpansionView> ExpansionViews(const v1::QueryResponse& r);
std::vector<SiteExpansionView> ExpansionViews(const v1::ExplainResponse& r);

// The table form: a "code expansion" block, one indented line per site
// summary, code expansion (with its samples on the next line) and
// unreached vocabulary ("WARNING"); sites that did not answer are listed
// with their status. `labels` (may be null) is the vocabulary labels hook.
std::string ExpansionTable(const std::vector<SiteExpansionView>& sites,
                           const audit::CodeLabelFn& labels);

// "WARNING: ..." lines for the top of a result whose codes leave some of a
// site's vocabularies unreached (an incomplete cohort must not look
// complete); "" when every vocabulary is reached.
std::string UnreachedWarning(const std::vector<SiteExpansionView>& sites);

// The CSV form (docs/researcher.md): a header
//   site,kind,code,domain,site_vocabulary,crosswalk,source_codes,rows,
//   equivalent_rows,narrower_rows,broader_rows,approximate_rows,
//   combination_rows,code_matching,mapping_set,sample_source_codes,note
// then per site one `summary` row (code_matching, mapping_set), one `code`
// row per code expansion, one `unreached` row per unreached vocabulary
// (domain, site_vocabulary); a site without an expansion has a
// `not_reported` row, a site that did not answer a row of its status
// (`failed`, `refused`, `timed_out`) with its reason as the note. Samples
// are space-separated. Fields are quoted (RFC 4180) when needed.
std::string ExpansionCsv(const std::vector<SiteExpansionView>& sites);

// The site's expansion in the proto JSON mapping (snake_case field names,
// every field printed, enums by name, 64-bit integers as strings).
std::string ExpansionJson(const v1::SiteExpansion& e);

// An RFC 4180 field: itself, or double-quoted with quotes doubled when it
// holds a comma, a quote or a line break.
std::string CsvField(const std::string& s);

}  // namespace passerelle::cli

#endif  // PASSERELLE_CLI_EXPANSION_FORMAT_H_
