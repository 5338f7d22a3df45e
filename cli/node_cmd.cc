#include "cli/node_cmd.h"

#include <iostream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/civil_time.h"
#include "absl/time/clock.h"
#include "cli/flags.h"
#include "cli/format.h"
#include "common/status_macros.h"
#include "node/crosswalk_loader.h"
#include "node/engine.h"
#include "node/loader.h"
#include "node/node_server.h"
#include "node/omop_loader.h"
#include "node/store.h"
#include "query/canonical.h"
#include "query/parser.h"

namespace passerelle::cli {
namespace {

constexpr char kUsage[] =
    "usage:\n"
    "  passerelle node load --store DIR --site ID\n"
    "                       [--format omop|synthea|snds] [--max-rejected N]\n"
    "                       [--future-events keep|reject]\n"
    "                       [--vocabulary-rules FILE (omop only)]\n"
    "                       [--crosswalk PATH[,source=VOCAB][,name=NAME]]...\n"
    "                       [--crosswalk-invalid refuse|skip] CSV_DIR\n"
    "    Events dated after today (UTC) fail the load unless --future-events\n"
    "    says whether they are kept (date-shifted extracts: query them with\n"
    "    `as of`) or left out. Crosswalk tables (docs/vocabulary.md) are\n"
    "    loaded with the data; an invalid row refuses the load unless\n"
    "    --crosswalk-invalid skip (the skipped rows are listed).\n"
    "    A load may run while the node serves: the new snapshot becomes\n"
    "    current when it is complete, and the node switches to it.\n"
    "  passerelle node count --store DIR [--format table|json|csv] 'QUERY'\n"
    "  passerelle node info --store DIR\n"
    "    The current snapshot and every snapshot the store keeps.\n"
    "  passerelle node use --store DIR VERSION\n"
    "    Makes a kept snapshot current again (a rollback); a serving node\n"
    "    switches to it.\n"
    "  passerelle node prune --store DIR [--keep N]\n"
    "    Removes snapshots beyond the current one and the N-1 most recent\n"
    "    others (default N = 2), skipping any in use (a serving node prunes\n"
    "    by itself, per its snapshots_kept).\n"
    "  passerelle node serve --config FILE\n";

bool ValidSiteId(const std::string& site) {
  if (site.empty() || site.size() > 32) return false;
  for (char c : site) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
          c == '_')) {
      return false;
    }
  }
  return true;
}

absl::Status Load(const ParsedFlags& flags) {
  if (flags.positional.size() != 1) {
    return absl::InvalidArgumentError("node load needs exactly one CSV_DIR");
  }
  const std::string store_dir = flags.Get("store");
  const std::string site = flags.Get("site");
  if (store_dir.empty())
    return absl::InvalidArgumentError("--store is required");
  if (!ValidSiteId(site)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--site \"", site, "\" must be 1-32 of [a-z0-9_-]"));
  }
  const std::string format = flags.Get("format", "omop");
  const node::Loader* loader = node::FindLoader(format);
  if (loader == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("--format \"", format, "\" is not supported (",
                     node::LoaderNamesJoined("|"), ")"));
  }
  node::LoadOptions options;
  PASSERELLE_ASSIGN_OR_RETURN(
      options.max_rejected, flags.GetInt("max-rejected", options.max_rejected));
  options.vocabulary_rules_file = flags.Get("vocabulary-rules");
  const std::string future = flags.Get("future-events");
  if (future == "keep") {
    options.future_events = node::FutureEvents::kKeep;
  } else if (future == "reject") {
    options.future_events = node::FutureEvents::kReject;
  } else if (flags.Has("future-events")) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--future-events \"", future, "\" must be keep or reject"));
  }

  // Crosswalks first: a bad table refuses the load before the data is read.
  node::InvalidCrosswalkRows invalid = node::InvalidCrosswalkRows::kRefuse;
  const std::string invalid_flag = flags.Get("crosswalk-invalid", "refuse");
  if (invalid_flag == "skip") {
    invalid = node::InvalidCrosswalkRows::kSkip;
  } else if (invalid_flag != "refuse") {
    return absl::InvalidArgumentError(absl::StrCat(
        "--crosswalk-invalid \"", invalid_flag, "\" must be refuse or skip"));
  }
  node::CrosswalkLoadReport crosswalk_report;
  PASSERELLE_ASSIGN_OR_RETURN(
      std::shared_ptr<const node::CrosswalkSet> crosswalks,
      node::LoadCrosswalks(flags.GetAll("crosswalk"), invalid,
                           &crosswalk_report));
  for (const node::RejectedRow& r : crosswalk_report.invalid_samples) {
    std::cerr << "crosswalk row skipped " << r.file << ":" << r.line << ": "
              << r.reason << "\n";
  }
  if (crosswalk_report.invalid >
      static_cast<int64_t>(crosswalk_report.invalid_samples.size())) {
    std::cerr << "... and "
              << crosswalk_report.invalid -
                     static_cast<int64_t>(
                         crosswalk_report.invalid_samples.size())
              << " more crosswalk rows skipped\n";
  }

  node::SnapshotBuilder builder(site);
  node::LoadReport report;
  const absl::Time start = absl::Now();
  // Events after the load date (UTC) are reported and kept or left out as
  // the steward chose; without a choice they fail the load.
  const absl::CivilDay today = absl::ToCivilDay(start, absl::UTCTimeZone());
  options.load_day = node::DaysFromCivil(static_cast<int>(today.year()),
                                         today.month(), today.day());
  absl::Status loaded =
      loader->Load(flags.positional[0], options, &builder, &report);
  for (const node::RejectedRow& r : report.rejected_samples) {
    std::cerr << "rejected " << r.file << ":" << r.line << ": " << r.reason
              << "\n";
  }
  const char* future_verb =
      options.future_events == node::FutureEvents::kKeep     ? "kept"
      : options.future_events == node::FutureEvents::kReject ? "left out"
                                                             : "found";
  for (const node::RejectedRow& r : report.future_samples) {
    std::cerr << "future event " << future_verb << " " << r.file << ":"
              << r.line << ": " << r.reason << "\n";
  }
  // A failed load changes nothing: the store is not even opened.
  PASSERELLE_RETURN_IF_ERROR(loaded);
  PASSERELLE_ASSIGN_OR_RETURN(std::unique_ptr<node::NodeStore> store,
                              node::NodeStore::Open(store_dir));
  PASSERELLE_ASSIGN_OR_RETURN(
      std::string version,
      store->NextVersion(site, absl::ToUnixSeconds(absl::Now())));
  // The snapshot identity names the mapping set in force.
  version = node::VersionWithMappingSet(version, crosswalks->id());
  std::shared_ptr<node::Snapshot> snap =
      builder.Build(version, absl::ToUnixSeconds(absl::Now()));
  if (!crosswalks->empty()) snap->crosswalks = crosswalks;
  PASSERELLE_RETURN_IF_ERROR(store->Commit(*snap));
  std::cout << "loaded site " << site << " snapshot " << version << ": "
            << report.persons << " persons, " << report.events << " events, "
            << report.rejected << " rejected rows, " << report.future_events
            << " events after the load date"
            << (report.future_events > 0 ? absl::StrCat(" (", future_verb, ")")
                                         : "")
            << ", " << snap->tables.size() << " code tables ("
            << absl::StrJoin(snap->Vocabularies(), ", ") << ") in "
            << absl::FormatDuration(absl::Now() - start) << "\n";
  for (const std::string& note : report.notes)
    std::cout << "note: " << note << "\n";
  if (!crosswalks->empty()) {
    std::cout << "mapping set " << crosswalks->id() << ":\n";
    for (const node::CrosswalkTable& t : crosswalks->tables()) {
      std::cout << "  crosswalk " << t.name << " (" << t.form
                << "): " << absl::StrJoin(t.SourceVocabularies(), ",") << " -> "
                << absl::StrJoin(t.TargetVocabularies(), ",") << ", "
                << t.rows.size() << " rows, " << t.skipped_rows
                << " invalid rows skipped, " << t.no_map_rows
                << " no-map rows, " << t.merged_rows
                << " repeated mappings merged\n";
    }
  }
  std::cout << "snapshot " << version
            << " is current; a node serving this store switches to it\n";
  return absl::OkStatus();
}

absl::Status Prune(const ParsedFlags& flags) {
  const std::string store_dir = flags.Get("store");
  if (store_dir.empty())
    return absl::InvalidArgumentError("--store is required");
  PASSERELLE_ASSIGN_OR_RETURN(int64_t keep, flags.GetInt("keep", 2));
  if (keep < 1) return absl::InvalidArgumentError("--keep must be >= 1");
  PASSERELLE_ASSIGN_OR_RETURN(std::unique_ptr<node::NodeStore> store,
                              node::NodeStore::Open(store_dir));
  PASSERELLE_ASSIGN_OR_RETURN(node::PruneResult pruned,
                              store->Prune(static_cast<int>(keep - 1)));
  std::cout << "removed " << pruned.removed.size() << " snapshot(s)"
            << (pruned.removed.empty()
                    ? ""
                    : absl::StrCat(": ", absl::StrJoin(pruned.removed, ", ")))
            << "\n";
  if (!pruned.in_use.empty()) {
    std::cout << "kept because in use: " << absl::StrJoin(pruned.in_use, ", ")
              << "\n";
  }
  return absl::OkStatus();
}

absl::Status Use(const ParsedFlags& flags) {
  if (flags.positional.size() != 1) {
    return absl::InvalidArgumentError("node use needs exactly one VERSION");
  }
  const std::string store_dir = flags.Get("store");
  if (store_dir.empty())
    return absl::InvalidArgumentError("--store is required");
  PASSERELLE_ASSIGN_OR_RETURN(std::unique_ptr<node::NodeStore> store,
                              node::NodeStore::Open(store_dir));
  PASSERELLE_RETURN_IF_ERROR(store->MakeCurrent(flags.positional[0]));
  std::cout << "snapshot " << flags.positional[0]
            << " is current; a node serving this store switches to it\n";
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<node::CohortEngine>> OpenEngine(
    const ParsedFlags& flags) {
  const std::string store_dir = flags.Get("store");
  if (store_dir.empty())
    return absl::InvalidArgumentError("--store is required");
  PASSERELLE_ASSIGN_OR_RETURN(std::unique_ptr<node::NodeStore> store,
                              node::NodeStore::Open(store_dir));
  PASSERELLE_ASSIGN_OR_RETURN(std::shared_ptr<node::Snapshot> snap,
                              store->LoadCurrent());
  return node::NewIndexEngine(std::move(snap));
}

absl::Status Count(const ParsedFlags& flags) {
  if (flags.positional.size() != 1) {
    return absl::InvalidArgumentError(
        "node count needs exactly one QUERY argument");
  }
  PASSERELLE_ASSIGN_OR_RETURN(OutputFormat format,
                              ParseOutputFormat(flags.Get("format")));
  PASSERELLE_ASSIGN_OR_RETURN(v1::Query query,
                              query::ParseQuery(flags.positional[0]));
  // Ages on today's date (UTC) unless the query says `as of`.
  query::PinReferenceDate(absl::Now(), &query);
  PASSERELLE_ASSIGN_OR_RETURN(std::unique_ptr<node::CohortEngine> engine,
                              OpenEngine(flags));
  v1::CountResponse response;
  PASSERELLE_ASSIGN_OR_RETURN(
      std::vector<v1::Cell> cells,
      engine->CountExpanded(query, response.mutable_expansion()));
  response.set_site(engine->meta().site);
  response.set_snapshot(engine->meta().version);
  for (v1::Cell& c : cells) *response.add_cells() = std::move(c);
  std::cout << FormatNodeCount(response, format);
  return absl::OkStatus();
}

absl::Status Info(const ParsedFlags& flags) {
  PASSERELLE_ASSIGN_OR_RETURN(std::unique_ptr<node::CohortEngine> engine,
                              OpenEngine(flags));
  const node::SnapshotMeta& m = engine->meta();
  std::cout << "site:         " << m.site << "\nsnapshot:     " << m.version
            << "\nloaded at:    "
            << absl::FormatTime(absl::FromUnixSeconds(m.loaded_at_unix))
            << "\npersons:      " << m.persons << "\nevents:       " << m.events
            << "\nvocabularies: " << absl::StrJoin(engine->Vocabularies(), ", ")
            << "\n";
  std::shared_ptr<const node::CrosswalkSet> set = engine->crosswalks();
  std::cout << "mapping set:  " << (set == nullptr ? "(none)" : set->id())
            << "\n";
  if (set != nullptr) {
    for (const node::CrosswalkTable& t : set->tables()) {
      std::cout << "crosswalk:    " << t.name << " (" << t.form << ") "
                << absl::StrJoin(t.SourceVocabularies(), ",") << " -> "
                << absl::StrJoin(t.TargetVocabularies(), ",") << ": "
                << t.rows.size() << " rows, " << t.skipped_rows << " skipped, "
                << t.no_map_rows << " no-map, " << t.merged_rows << " merged\n";
    }
  }
  engine.reset();  // Its lease would show the current snapshot in use.
  PASSERELLE_ASSIGN_OR_RETURN(std::unique_ptr<node::NodeStore> store,
                              node::NodeStore::Open(flags.Get("store")));
  PASSERELLE_ASSIGN_OR_RETURN(std::vector<node::StoredSnapshotInfo> kept,
                              store->List());
  std::cout << "kept:\n";
  for (const node::StoredSnapshotInfo& s : kept) {
    std::cout << "  " << s.version << (s.current ? " (current)" : "")
              << (s.in_use ? " (in use)" : "") << "\n";
  }
  return absl::OkStatus();
}

}  // namespace

int RunNodeCommand(const std::vector<std::string>& args) {
  if (args.empty() || args[0] == "help" || args[0] == "--help") {
    std::cerr << kUsage;
    return args.empty() ? 2 : 0;
  }
  const std::string sub = args[0];
  const std::vector<std::string> rest(args.begin() + 1, args.end());
  absl::StatusOr<ParsedFlags> flags =
      ParseFlags(rest, {"store", "site", "format", "vocabulary-rules",
                        "max-rejected", "future-events", "config", "crosswalk",
                        "crosswalk-invalid", "keep"});
  absl::Status status;
  if (!flags.ok()) {
    status = flags.status();
  } else if (sub == "load") {
    status = Load(*flags);
  } else if (sub == "count") {
    status = Count(*flags);
  } else if (sub == "info") {
    status = Info(*flags);
  } else if (sub == "use") {
    status = Use(*flags);
  } else if (sub == "prune") {
    status = Prune(*flags);
  } else if (sub == "serve") {
    status = node::RunNodeServerFromFile(flags->Get("config"));
  } else {
    std::cerr << "passerelle node: unknown subcommand \"" << sub << "\"\n"
              << kUsage;
    return 2;
  }
  if (!status.ok()) {
    std::cerr << "passerelle node " << sub << ": " << status.message() << "\n";
    return status.code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
  }
  return 0;
}

}  // namespace passerelle::cli
