// Loader for extracts of the French national health data system (SNDS) in
// their native layouts, one CSV file per table (',' or ';' separated; the
// separator is read from each header line). What each table becomes:
//
//   IR_BEN_R   one row per (BEN_NIR_PSA, BEN_RNG_GEM), the table's key;
//              one person per BEN_IDT_ANO (the per-person pseudonym): the
//              pairs of one person (a person may hold several NIRs or ranks
//              over a life) are merged and count once. A pair without
//              BEN_IDT_ANO (empty, or no such column) is a person of its
//              own: for it the unit is the pair, and the load report says
//              how many pairs were merged and how many were unmapped.
//              Pairs of one person that disagree: sex -> unknown, birth
//              year and death date -> the earliest (counted in a note);
//              BEN_SEX_COD 1 -> male, 2 -> female, other -> unknown;
//              BEN_NAI_ANN -> birth year (BEN_NAI_MOI is checked, but the
//              model keeps a birth date only when the day is known, so ages
//              use the year alone, on 1 July, as the contract says);
//              BEN_DCD_DTE -> deceased, except empty and the SNDS "alive"
//              sentinel (year 1600).
//   PMSI MCO, one set per year: T_MCOaaB/C/D/A.csv with "aa" literal or a
//   two-digit year (T_MCO19B.csv); stays are keyed by (ETA_NUM, RSA_NUM)
//   within a year.
//     T_MCOaaC  the linkage table: NIR_ANO_17 -> IR_BEN_R.BEN_NIR_PSA (the
//               PMSI has no twin rank, so a BEN_NIR_PSA held by ranks of
//               several persons is ambiguous and its stays are rejected); the
//               stay's entry date is EXE_SOI_DTD, or ENT_DAT (DDMMYYYY)
//               when EXE_SOI_DTD is empty. With require_valid_linkage_codes
//               a stay is linked only when its return codes (NIR_RET,
//               NAI_RET, SEX_RET, SEJ_RET, FHO_RET, PMS_RET, DAT_RET,
//               COH_NAI_RET, COH_SEX_RET, those present) are all "0". A
//               stay key on several rows is ambiguous: every row is rejected.
//     T_MCOaaB  DGN_PAL, DGN_REL -> condition cim10, one event each, dated
//               by the stay's entry date.
//     T_MCOaaD  ASS_DGN (secondary diagnoses) -> condition cim10, same date.
//     T_MCOaaA  CDC_ACT -> procedure ccam, dated entry date + ENT_DAT_DEL
//               days (ENT_DAT_DEL empty: the entry date).
//   DCIR
//     ER_PHA_F  one dispensing per row, joined to its ER_PRS_F row on the
//               nine DCIR join columns (DCT_ORD_NUM, FLX_DIS_DTD,
//               FLX_EMT_NUM, FLX_EMT_ORD, FLX_EMT_TYP, FLX_TRT_DTD,
//               ORG_CLE_NUM, PRS_ORD_NUM, REM_TYP_AFF) -> drug atc, dated by
//               ER_PRS_F.EXE_SOI_DTD, person (BEN_NIR_PSA, BEN_RNG_GEM). The
//               ATC code is PHA_ATC_C07 when ER_PHA_F has it, otherwise
//               looked up from PHA_PRS_C13 in IR_PHA_R.csv (PHA_CIP_C13 ->
//               PHA_ATC_C07) when the directory holds it; a CIP13 without
//               ATC is not guessed (counted in a note). Rows with
//               PHA_ACT_QSN <= 0 (reversals) and prestations with DPN_QLF
//               71 (sent for information only) are not dispensings (note).
//
// Diagnosis codes are normalised (upper case, dots and spaces removed:
// "E11.9" and "E11 9" are E119). Rows that cannot be linked (no stay, no
// beneficiary, ambiguous, invalid return codes, no prestation) are rejected
// with file, line and reason; reasons never contain an identifier.
#ifndef PASSERELLE_NODE_SNDS_LOADER_H_
#define PASSERELLE_NODE_SNDS_LOADER_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "node/loader.h"

namespace passerelle::node {

struct SndsOptions {
  // Link a PMSI stay only when its T_MCOaaC return codes are all "0", as
  // SNDS practice recommends; a stay with an erroneous NIR, birth date or
  // sex would otherwise be attached to the wrong person.
  bool require_valid_linkage_codes = true;
};

// Reads the SNDS tables in `dir` (IR_BEN_R.csv required, the others
// optional) into `builder`. options.max_rejected applies;
// options.vocabulary_rules_file must be empty. Thread-compatible.
absl::Status LoadSndsDirectory(const std::string& dir,
                               const LoadOptions& options,
                               SnapshotBuilder* builder, LoadReport* report,
                               const SndsOptions& snds = SndsOptions());

// A date as SNDS extracts write them: YYYY-MM-DD (optionally with a time),
// DD/MM/YYYY, or the SAS form DDMONYYYY[:hh:mm:ss] ("02JAN2007:22:12:17").
absl::StatusOr<int32_t> ParseSndsDate(absl::string_view text);
// The PMSI's DDMMYYYY (ENT_DAT, SOR_DAT).
absl::StatusOr<int32_t> ParseDdmmyyyy(absl::string_view text);

}  // namespace passerelle::node

#endif  // PASSERELLE_NODE_SNDS_LOADER_H_
