// A node's account of how a query's codes reached its vocabularies
// (query.proto SiteExpansion), as the gateway accepts it. The node is not
// trusted: its expansion is checked against the query the gateway sent it
// before any of it reaches a researcher, an audit entry or the release
// cache. Pure functions, thread-safe.
#ifndef PASSERELLE_GATEWAY_EXPANSION_H_
#define PASSERELLE_GATEWAY_EXPANSION_H_

#include <cstddef>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "passerelle/v1/audit.pb.h"
#include "passerelle/v1/query.pb.h"

namespace passerelle::gateway {

// Bounds on one site's expansion as the gateway passes it on. A node within
// the contract (docs/vocabulary.md) stays far below them for any realistic
// query; beyond them the gateway keeps the first ones and says how many it
// left out (an expansion is public metadata, never data, so cutting it
// loses no count). Together they keep a site's expansion under
// kMaxSiteExpansionBytes, and a response for limits::kMaxSites sites well
// under gRPC's 4 MiB default.
inline constexpr int kMaxCodeExpansions = 256;   // CodeExpansion entries.
inline constexpr int kMaxExpansionSamples = 20;  // Per CodeExpansion.
inline constexpr int kMaxUnreached = 128;        // "<domain>: <vocab>".
inline constexpr size_t kMaxCrosswalkNameBytes = 128;
inline constexpr size_t kMaxVocabularyNameBytes = 32;
// A site's whole expansion, serialized: samples go first, then the last
// code expansions, until it fits.
inline constexpr size_t kMaxSiteExpansionBytes = 32 * 1024;
// Any count of an expansion (rows, source codes): far above the largest
// published crosswalk (the GEMs have about 80,000 rows).
inline constexpr int64_t kMaxExpansionCount = 100'000'000;

// `expansion` as `site` answered it for `query` (the AST the gateway sent),
// checked and bounded. An empty message (a node that reports no expansion)
// is accepted as it is.
//
// Refused (INVALID_ARGUMENT naming the field and a quoted prefix of the
// value; the gateway then treats the site's whole answer as failed, as for
// cells outside the public domain) when the node contradicts what it was
// asked or sends what no honest node could: another site's name, a code
// matching other than the query's, a mapping set that is not 64 lowercase
// hex digits, a code the query does not contain (or in another domain), a
// vocabulary that is not a known one, a direct match (no crosswalk) to a
// vocabulary the query's code does not match, a crosswalk name with control
// characters or over kMaxCrosswalkNameBytes, a negative or implausible
// count, rows by relation that do not add up to the rows, a sample that is
// not a valid code of its vocabulary, an unreached entry not of the form
// "<queried domain>: <known vocabulary>".
//
// Cut (with a sentence per cut appended to `notes`) when it is only too
// large: more than kMaxCodeExpansions code expansions, kMaxExpansionSamples
// samples or kMaxUnreached unreached entries, or over
// kMaxSiteExpansionBytes in all.
absl::Status CheckSiteExpansion(const std::string& site, const v1::Query& query,
                                v1::SiteExpansion* expansion,
                                std::vector<std::string>* notes);

// The researcher-facing notes for `expansion`'s unreached vocabularies:
// "UNREACHED: at site qc, condition: icd9cm is not reached by any code of
// the query; its records are not counted", one per entry.
std::vector<std::string> UnreachedNotes(const std::string& site,
                                        const v1::SiteExpansion& expansion);

// Cuts the expansions of `entry`'s sites until the whole entry serializes
// to at most `max_bytes` (samples first, then code expansions and unreached
// entries from the largest site's end) and appends one reason saying what
// was left out of the entry. Returns false when even without any expansion
// the entry is larger (nothing more to cut here). An entry already within
// `max_bytes` is left untouched.
bool FitExpansions(v1::AuditEntry* entry, size_t max_bytes);

}  // namespace passerelle::gateway

#endif  // PASSERELLE_GATEWAY_EXPANSION_H_
