#include "cli/format.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <map>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "cli/expansion_format.h"

namespace passerelle::cli {
namespace {

std::string KeyJson(const v1::CellKey& key) {
  std::vector<std::string> parts;
  for (const v1::DimensionValue& v : key.values()) {
    parts.push_back(
        absl::StrCat(JsonQuote(v.dimension()), ": ", JsonQuote(v.value())));
  }
  return absl::StrCat("{", absl::StrJoin(parts, ", "), "}");
}

std::string KeyText(const v1::CellKey& key) {
  std::vector<std::string> parts;
  for (const v1::DimensionValue& v : key.values()) parts.push_back(v.value());
  return parts.empty() ? "all" : absl::StrJoin(parts, " ");
}

std::string KeyCsv(const v1::CellKey& key) {
  std::vector<std::string> parts;
  for (const v1::DimensionValue& v : key.values()) parts.push_back(v.value());
  return absl::StrJoin(parts, ",");
}

std::string DimsCsvHeader(const v1::CellKey& key) {
  std::vector<std::string> parts;
  for (const v1::DimensionValue& v : key.values())
    parts.push_back(v.dimension());
  return absl::StrJoin(parts, ",");
}

std::string Double(double d) { return absl::StrFormat("%.6g", d); }

std::string PrecisionName(const v1::Precision& p) {
  switch (p.kind()) {
    case v1::Precision::EXACT:
      return "exact";
    case v1::Precision::NOISED:
      return "noised";
    case v1::Precision::SUPPRESSED:
      return "suppressed";
    default:
      return "unspecified";
  }
}

// "123", "< 10", or "suppressed" for a cell withheld only to protect
// another (exact mode's complementary suppression: it may be >= k).
std::string ShownCount(const v1::ReleasedCell& c) {
  if (!c.has_count() && c.precision().complementary()) return "suppressed";
  if (!c.has_count()) return absl::StrCat("< ", c.precision().threshold());
  return absl::StrCat(c.count());
}

std::string PrecisionText(const v1::Precision& p) {
  switch (p.kind()) {
    case v1::Precision::EXACT:
      return "exact";
    case v1::Precision::NOISED:
      if (p.mechanism() == "discrete_gaussian") {
        return absl::StrCat("noised (gaussian, rho=", Double(p.rho()), ")");
      }
      return absl::StrCat("noised (laplace, eps=", Double(p.epsilon()), ")");
    case v1::Precision::SUPPRESSED:
      if (p.complementary()) return "suppressed (protects a cell < k)";
      return absl::StrCat("suppressed (< ", p.threshold(), ")");
    default:
      return "?";
  }
}

std::string ReleasedCellJson(const v1::ReleasedCell& c) {
  std::string s = absl::StrCat(
      "{\"key\": ", KeyJson(c.key()),
      ", \"count\": ", c.has_count() ? absl::StrCat(c.count()) : "null",
      ", \"precision\": ", JsonQuote(PrecisionName(c.precision())));
  const v1::Precision& p = c.precision();
  if (p.kind() == v1::Precision::NOISED) {
    absl::StrAppend(&s, ", \"mechanism\": ", JsonQuote(p.mechanism()));
    if (p.mechanism() == "discrete_gaussian") {
      absl::StrAppend(&s, ", \"rho\": ", Double(p.rho()));
    } else {
      absl::StrAppend(&s, ", \"epsilon\": ", Double(p.epsilon()));
    }
  }
  if (p.complementary()) absl::StrAppend(&s, ", \"complementary\": true");
  if (p.threshold() > 0)
    absl::StrAppend(&s, ", \"threshold\": ", p.threshold());
  if (p.rounding() > 1) absl::StrAppend(&s, ", \"rounding\": ", p.rounding());
  if (c.has_count()) {
    absl::StrAppend(&s, ", \"interval\": [", c.interval_low(), ", ",
                    c.interval_high(), "]");
  } else {
    absl::StrAppend(&s, ", \"interval\": null");
  }
  absl::StrAppend(&s, "}");
  return s;
}

const char* StatusName(v1::SiteStatus s) {
  switch (s) {
    case v1::SITE_STATUS_OK:
      return "ok";
    case v1::SITE_STATUS_FAILED:
      return "failed";
    case v1::SITE_STATUS_TIMED_OUT:
      return "timed_out";
    case v1::SITE_STATUS_REFUSED:
      return "refused";
    default:
      return "unspecified";
  }
}

// Left-aligned first columns, right-aligned numbers.
std::string RenderTable(const std::vector<std::vector<std::string>>& rows,
                        size_t left_columns) {
  std::vector<size_t> width;
  for (const auto& row : rows) {
    if (width.size() < row.size()) width.resize(row.size(), 0);
    for (size_t i = 0; i < row.size(); ++i)
      width[i] = std::max(width[i], row[i].size());
  }
  std::string out;
  for (size_t r = 0; r < rows.size(); ++r) {
    std::string line;
    for (size_t i = 0; i < rows[r].size(); ++i) {
      const std::string& cell = rows[r][i];
      const std::string pad(width[i] - cell.size(), ' ');
      if (i > 0) line += "  ";
      line += i < left_columns ? cell + pad : pad + cell;
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + "\n";
    if (r == 0) {
      size_t total = 0;
      for (size_t w : width) total += w + 2;
      out += std::string(total > 2 ? total - 2 : 0, '-') + "\n";
    }
  }
  return out;
}

std::vector<std::string> DimHeader(const v1::CellKey& key) {
  std::vector<std::string> h;
  for (const v1::DimensionValue& v : key.values()) h.push_back(v.dimension());
  if (h.empty()) h.push_back("cohort");
  return h;
}

std::vector<std::string> DimCells(const v1::CellKey& key) {
  std::vector<std::string> h;
  for (const v1::DimensionValue& v : key.values()) h.push_back(v.value());
  if (h.empty()) h.push_back("all");
  return h;
}

}  // namespace

std::string JsonQuote(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        if (c < 0x20) {
          out += absl::StrFormat("\\u%04x", c);
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

absl::StatusOr<OutputFormat> ParseOutputFormat(const std::string& name) {
  if (name.empty() || name == "table") return OutputFormat::kTable;
  if (name == "json") return OutputFormat::kJson;
  if (name == "csv") return OutputFormat::kCsv;
  return absl::InvalidArgumentError(
      absl::StrCat("--format: \"", name, "\" is not one of table, json, csv"));
}

std::string FormatNodeCount(const v1::CountResponse& r, OutputFormat format) {
  switch (format) {
    case OutputFormat::kJson: {
      std::vector<std::string> cells;
      for (const v1::Cell& c : r.cells()) {
        cells.push_back(absl::StrCat("{\"key\": ", KeyJson(c.key()),
                                     ", \"count\": ", c.count(), "}"));
      }
      // The expansion only when the node reports one (it always does once
      // crosswalks are supported), so older readers see the same object.
      return absl::StrCat(
          "{\"site\": ", JsonQuote(r.site()),
          ", \"snapshot\": ", JsonQuote(r.snapshot()), ", \"cells\": [",
          absl::StrJoin(cells, ", "), "]",
          audit::ExpansionIsEmpty(r.expansion())
              ? ""
              : absl::StrCat(", \"expansion\": ", ExpansionJson(r.expansion())),
          "}\n");
    }
    case OutputFormat::kCsv: {
      std::string out;
      if (r.cells_size() > 0) {
        std::string dims = DimsCsvHeader(r.cells(0).key());
        out = absl::StrCat("site,", dims.empty() ? "" : dims + ",", "count\n");
      }
      for (const v1::Cell& c : r.cells()) {
        std::string key = KeyCsv(c.key());
        absl::StrAppend(&out, r.site(), ",", key.empty() ? "" : key + ",",
                        c.count(), "\n");
      }
      // No expansion section here: scripts read these rows to the end
      // (the table and JSON forms show the expansion).
      return out;
    }
    case OutputFormat::kTable: {
      if (r.cells_size() == 0) return "no cells\n";
      std::vector<std::vector<std::string>> rows;
      std::vector<std::string> header = DimHeader(r.cells(0).key());
      const size_t left = header.size();
      header.push_back("count");
      rows.push_back(header);
      int64_t total = 0;
      for (const v1::Cell& c : r.cells()) {
        std::vector<std::string> row = DimCells(c.key());
        row.push_back(absl::StrCat(c.count()));
        total += c.count();
        rows.push_back(row);
      }
      if (r.cells_size() > 1) {
        std::vector<std::string> row(left, "");
        row[0] = "total";
        row.push_back(absl::StrCat(total));
        rows.push_back(row);
      }
      std::string out = absl::StrCat(
          "site ", r.site(), " (snapshot ", r.snapshot(),
          "), exact counts of distinct patients\n\n", RenderTable(rows, left));
      if (!audit::ExpansionIsEmpty(r.expansion())) {
        const std::vector<SiteExpansionView> view = {
            {r.site(), v1::SITE_STATUS_OK, "", &r.expansion()}};
        absl::StrAppend(&out, "\n", UnreachedWarning(view),
                        ExpansionTable(view, nullptr));
      }
      return out;
    }
  }
  return "";
}

std::string FormatQueryResponse(const v1::QueryResponse& r, OutputFormat format,
                                const FormatOptions& options) {
  switch (format) {
    case OutputFormat::kJson: {
      std::vector<std::string> sites;
      for (const v1::SiteResult& s : r.sites()) {
        std::vector<std::string> cells;
        for (const v1::ReleasedCell& c : s.cells())
          cells.push_back(ReleasedCellJson(c));
        sites.push_back(absl::StrCat(
            "{\"site\": ", JsonQuote(s.site()),
            ", \"status\": ", JsonQuote(StatusName(s.status())),
            ", \"reason\": ", JsonQuote(s.reason()),
            ", \"snapshot\": ", JsonQuote(s.snapshot()), ", \"cells\": [",
            absl::StrJoin(cells, ", "), "]",
            ", \"expansion\": ", ExpansionJson(s.expansion()), "}"));
      }
      std::vector<std::string> combined;
      for (const v1::ReleasedCell& c : r.combined())
        combined.push_back(ReleasedCellJson(c));
      std::vector<std::string> notes;
      for (const std::string& n : r.notes()) notes.push_back(JsonQuote(n));
      return absl::StrCat(
          "{\"complete\": ", r.complete() ? "true" : "false",
          ", \"request_id\": ", JsonQuote(r.request_id()),
          ", \"query\": ", JsonQuote(r.canonical_query()), ", \"sites\": [",
          absl::StrJoin(sites, ", "), "]", ", \"combined\": {\"cells\": [",
          absl::StrJoin(combined, ", "), "]}",
          ", \"epsilon_charged\": ", Double(r.epsilon_charged()),
          ", \"rho_charged\": ", Double(r.rho_charged()),
          ", \"policy_version\": ", JsonQuote(r.policy_version()),
          ", \"audit_index\": ", r.audit_index(),
          ", \"repeat\": ", r.repeat() ? "true" : "false", ", \"notes\": [",
          absl::StrJoin(notes, ", "), "]}\n");
    }
    case OutputFormat::kCsv: {
      std::string out;
      std::string dims;
      if (r.combined_size() > 0) dims = DimsCsvHeader(r.combined(0).key());
      out = absl::StrCat(
          "site,", dims.empty() ? "" : dims + ",",
          "count,precision,threshold,interval_low,interval_high\n");
      auto row = [&](const std::string& site, const v1::ReleasedCell& c) {
        std::string key = KeyCsv(c.key());
        absl::StrAppend(
            &out, site, ",", key.empty() ? "" : key + ",",
            c.has_count() ? absl::StrCat(c.count()) : "", ",",
            PrecisionName(c.precision()), ",", c.precision().threshold(), ",",
            c.has_count() ? absl::StrCat(c.interval_low()) : "", ",",
            c.has_count() ? absl::StrCat(c.interval_high()) : "", "\n");
      };
      for (const v1::SiteResult& s : r.sites()) {
        for (const v1::ReleasedCell& c : s.cells()) row(s.site(), c);
      }
      for (const v1::ReleasedCell& c : r.combined()) row("combined", c);
      // The expansion section, after an empty line: a reader of the cells
      // stops at the first empty line (docs/researcher.md).
      absl::StrAppend(&out, "\n", ExpansionCsv(ExpansionViews(r)));
      return out;
    }
    case OutputFormat::kTable: {
      std::string out = absl::StrCat("query: ", r.canonical_query(), "\n");
      if (r.complete()) {
        absl::StrAppend(&out, "result: complete (all sites answered)\n");
      } else {
        absl::StrAppend(&out, "result: PARTIAL, missing sites:\n");
        for (const v1::SiteResult& s : r.sites()) {
          if (s.status() != v1::SITE_STATUS_OK) {
            absl::StrAppend(&out, "  ", s.site(), ": ", StatusName(s.status()),
                            " - ", s.reason(), "\n");
          }
        }
      }
      const std::vector<SiteExpansionView> views = ExpansionViews(r);
      absl::StrAppend(&out, UnreachedWarning(views), "\n");
      absl::StrAppend(&out, ExpansionTable(views, options.code_labels), "\n");
      if (r.combined_size() == 0) {
        for (const std::string& n : r.notes())
          absl::StrAppend(&out, "note: ", n, "\n");
        return out;
      }
      std::vector<std::vector<std::string>> rows;
      std::vector<std::string> header = DimHeader(r.combined(0).key());
      const size_t left = header.size();
      std::vector<const v1::SiteResult*> ok_sites;
      for (const v1::SiteResult& s : r.sites()) {
        header.push_back(s.site());
        ok_sites.push_back(&s);
      }
      header.push_back("combined");
      header.push_back("95% interval");
      header.push_back("precision");
      rows.push_back(header);
      // Site cells are matched to combined cells by key text.
      std::vector<std::map<std::string, const v1::ReleasedCell*>> by_key(
          ok_sites.size());
      for (size_t i = 0; i < ok_sites.size(); ++i) {
        for (const v1::ReleasedCell& c : ok_sites[i]->cells())
          by_key[i][KeyText(c.key())] = &c;
      }
      int64_t total = 0;
      bool any_suppressed = false;
      for (const v1::ReleasedCell& c : r.combined()) {
        std::vector<std::string> row = DimCells(c.key());
        for (size_t i = 0; i < ok_sites.size(); ++i) {
          auto it = by_key[i].find(KeyText(c.key()));
          row.push_back(
              it == by_key[i].end()
                  ? (ok_sites[i]->status() == v1::SITE_STATUS_OK ? "" : "n/a")
                  : ShownCount(*it->second));
        }
        row.push_back(ShownCount(c));
        row.push_back(c.has_count() &&
                              c.precision().kind() == v1::Precision::NOISED
                          ? absl::StrCat("[", c.interval_low(), ", ",
                                         c.interval_high(), "]")
                          : "");
        row.push_back(PrecisionText(c.precision()));
        if (c.has_count())
          total += c.count();
        else
          any_suppressed = true;
        rows.push_back(row);
      }
      if (r.combined_size() > 1) {
        std::vector<std::string> row(left, "");
        row[0] = any_suppressed ? "total (shown cells)" : "total";
        for (size_t i = 0; i < ok_sites.size(); ++i) row.push_back("");
        row.push_back(absl::StrCat(total));
        rows.push_back(row);
      }
      absl::StrAppend(&out, RenderTable(rows, left));
      absl::StrAppend(&out, "\nprivacy cost charged: ");
      if (r.rho_charged() > 0 && r.epsilon_charged() == 0) {
        absl::StrAppend(&out, "rho=", Double(r.rho_charged()));
      } else {
        absl::StrAppend(&out, "epsilon=", Double(r.epsilon_charged()));
      }
      absl::StrAppend(&out, "   audit entry #", r.audit_index(), "   policy ",
                      r.policy_version().substr(0, 12), "\n");
      if (r.repeat()) {
        absl::StrAppend(&out, "repeat of audit entry #", r.first_audit_index(),
                        ": same answer, no budget charged\n");
      }
      for (const std::string& n : r.notes()) {
        // Said above, in the code expansion block.
        if (absl::StartsWith(n, "UNREACHED: ")) continue;
        absl::StrAppend(&out, "note: ", n, "\n");
      }
      return out;
    }
  }
  return "";
}

std::string FormatExplainResponse(const v1::ExplainResponse& r,
                                  OutputFormat format,
                                  const FormatOptions& options) {
  const std::vector<SiteExpansionView> views = ExpansionViews(r);
  switch (format) {
    case OutputFormat::kJson: {
      google::protobuf::util::JsonPrintOptions json_options;
      json_options.preserve_proto_field_names = true;
      json_options.always_print_primitive_fields = true;
      std::string json;
      if (!google::protobuf::util::MessageToJsonString(r, &json, json_options)
               .ok()) {
        return "null\n";
      }
      return json + "\n";
    }
    case OutputFormat::kCsv:
      return ExpansionCsv(views);
    case OutputFormat::kTable: {
      bool complete = true;
      for (const SiteExpansionView& v : views)
        complete &= v.status == v1::SITE_STATUS_OK;
      std::string out = absl::StrCat(
          "explain: ", r.canonical_query(), "\n",
          "nothing was counted and no budget was charged (audit entry #",
          r.audit_index(), ", policy ", r.policy_version().substr(0, 12),
          ")\n");
      if (!complete) {
        absl::StrAppend(&out,
                        "PARTIAL: some sites could not explain (listed "
                        "below); a query would be partial too\n");
      }
      absl::StrAppend(&out, UnreachedWarning(views), "\n");
      absl::StrAppend(&out, ExpansionTable(views, options.code_labels));
      return out;
    }
  }
  return "";
}

}  // namespace passerelle::cli
