// One-line texts of a crosswalk expansion (query.proto SiteExpansion), for
// people: the researcher's query and explain output (cli/format.h) and the
// auditor's `passerelle audit show`. One wording everywhere, e.g.
//   qc: icd10:E11* via gem-icd9cm-icd10cm → icd9: 48 source codes (99 rows,
//   approximate)
// Every text is printable: control characters in what a server sent are
// shown as '?', never passed to the terminal. Pure functions, thread-safe.
#ifndef PASSERELLE_AUDIT_EXPANSION_TEXT_H_
#define PASSERELLE_AUDIT_EXPANSION_TEXT_H_

#include <functional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "passerelle/v1/query.pb.h"

namespace passerelle::audit {

// Labels hook: given a code as the query writes it ("icd10:E11*"), a short
// label to show beside it ("Type 2 diabetes mellitus"), or "" for none.
// Null: codes are shown without labels.
using CodeLabelFn = std::function<std::string(const std::string& code)>;

// "codes mapped", "codes equivalent" or "codes exact".
std::string CodeMatchingText(v1::CodeMatching matching);

// `text` with every control character (and DEL) replaced by '?'.
std::string Printable(absl::string_view text);

// How one query code reached one of the site's vocabularies:
//   "icd10:E11* via gem-icd9cm-icd10cm → icd9: 48 source codes (99 rows,
//   approximate)", "... (99 rows: 40 equivalent, 59 approximate; 12 in
//   combinations)", or "icd10:E11* → cim10 directly" for a vocabulary the
//   query's own vocabulary matches (no crosswalk). Without the site prefix.
std::string CodeExpansionText(const v1::CodeExpansion& e,
                              const CodeLabelFn& labels = nullptr);

// "e.g. 25000, 25001, 25002 and 45 more" (at most `max` samples), or "" when
// the expansion carries no sample.
std::string SamplesText(const v1::CodeExpansion& e, int max = 8);

// The warning for one `unreached` entry: "condition: icd9cm is not reached
// by any code of the query; its records are not counted".
std::string UnreachedText(absl::string_view unreached);

// The site's summary: "codes mapped, mapping set 3f2a9c0d1e2b",
// "codes exact (no crosswalk used)", "codes mapped, no crosswalk loaded", or
// for an empty message "no expansion reported".
std::string ExpansionSummaryText(const v1::SiteExpansion& e);

// True when the message carries nothing (a node that reports no expansion).
bool ExpansionIsEmpty(const v1::SiteExpansion& e);

// Every line of one site's expansion, each prefixed "<site>: ": the
// summary, one line per code expansion, then one "WARNING: ..." line per
// unreached vocabulary. `site` names the site when the message does not.
std::vector<std::string> SiteExpansionLines(
    const std::string& site, const v1::SiteExpansion& e,
    const CodeLabelFn& labels = nullptr);

}  // namespace passerelle::audit

#endif  // PASSERELLE_AUDIT_EXPANSION_TEXT_H_
