#include "vocab/index.h"

#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "common/crash_point.h"
#include "common/status_macros.h"
#include "query/vocabulary.h"
#include "rocksdb/db.h"
#include "rocksdb/options.h"
#include "rocksdb/write_batch.h"
#include "vocab/sources.h"

namespace passerelle::vocab {
namespace {

namespace fs = std::filesystem;

constexpr char kFormatKey[] = "m:format";
constexpr char kFormat[] = "passerelle-vocab-index-1";
constexpr char kSourceDirKey[] = "m:source_dir";
constexpr char kFingerprintKey[] = "m:fingerprint";
constexpr char kSourcesKey[] = "m:sources";

absl::Status FromRocks(const rocksdb::Status& s, absl::string_view what) {
  if (s.ok()) return absl::OkStatus();
  return absl::UnavailableError(
      absl::StrCat("vocabulary index ", what, ": ", s.ToString()));
}

std::string ChunkKey(absl::string_view vocabulary, int chunk) {
  return absl::StrFormat("t:%s:%06d", vocabulary, chunk);
}

// One line per file: "file\tsize\tmtime_ns" or "file\t-".
std::string Fingerprint(const std::string& dir) {
  std::vector<std::string> lines;
  for (const std::string& file : AllSourceFiles()) {
    std::error_code ec;
    const fs::path p = fs::path(dir) / file;
    const uintmax_t size = fs::file_size(p, ec);
    if (ec) {
      lines.push_back(absl::StrCat(file, "\t-"));
      continue;
    }
    const auto mtime = fs::last_write_time(p, ec);
    lines.push_back(absl::StrCat(
        file, "\t", size, "\t",
        ec ? 0 : static_cast<int64_t>(mtime.time_since_epoch().count())));
  }
  return absl::StrJoin(lines, "\n");
}

// Tabs and line breaks would break the line format.
std::string Flat(absl::string_view s) {
  return absl::StrReplaceAll(s, {{"\t", " "}, {"\n", " "}, {"\r", " "}});
}

std::string EncodeSources(const std::vector<SourceReport>& sources) {
  std::vector<std::string> lines;
  for (const SourceReport& s : sources) {
    std::vector<std::string> examples;
    for (const std::string& e : s.invalid_examples) examples.push_back(Flat(e));
    lines.push_back(absl::StrJoin(
        {s.vocabulary, std::string(LanguageCode(s.language)), s.file,
         Flat(s.description), std::string(s.present ? "1" : "0"),
         absl::StrCat(s.rows), absl::StrCat(s.labelled), absl::StrCat(s.blank),
         absl::StrCat(s.invalid), absl::StrJoin(examples, "\x1f")},
        "\t"));
  }
  return absl::StrJoin(lines, "\n");
}

absl::StatusOr<std::vector<SourceReport>> DecodeSources(
    absl::string_view text, const std::string& index_dir) {
  std::vector<SourceReport> out;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    std::vector<std::string> f = absl::StrSplit(line, '\t');
    SourceReport r;
    std::optional<Language> lang =
        f.size() == 10 ? ParseLanguage(f[1]) : std::nullopt;
    if (!lang || !absl::SimpleAtoi(f[5], &r.rows) ||
        !absl::SimpleAtoi(f[6], &r.labelled) ||
        !absl::SimpleAtoi(f[7], &r.blank) ||
        !absl::SimpleAtoi(f[8], &r.invalid)) {
      return absl::DataLossError(
          absl::StrCat("vocabulary index ", index_dir, ": key ", kSourcesKey,
                       " is damaged; rebuild it with passerelle vocab index"));
    }
    r.vocabulary = f[0];
    r.language = *lang;
    r.file = f[2];
    r.description = f[3];
    r.present = f[4] == "1";
    if (!f[9].empty()) r.invalid_examples = absl::StrSplit(f[9], '\x1f');
    out.push_back(std::move(r));
  }
  return out;
}

bool IsIndex(const std::string& dir) {
  rocksdb::Options options;
  rocksdb::DB* raw = nullptr;
  if (!rocksdb::DB::OpenForReadOnly(options, dir, &raw).ok()) return false;
  std::unique_ptr<rocksdb::DB> db(raw);
  std::string format;
  return db->Get(rocksdb::ReadOptions(), kFormatKey, &format).ok() &&
         absl::StartsWith(format, "passerelle-vocab-index-");
}

absl::Status WriteIndex(const Labels& labels,
                        const std::string& nomenclature_dir,
                        const std::string& path) {
  rocksdb::Options options;
  options.create_if_missing = true;
  options.error_if_exists = true;
  // Read whole at every command: decompressing would cost more than the
  // few megabytes it saves.
  options.compression = rocksdb::kNoCompression;
  rocksdb::DB* raw = nullptr;
  PASSERELLE_RETURN_IF_ERROR(FromRocks(rocksdb::DB::Open(options, path, &raw),
                                       absl::StrCat("create ", path)));
  std::unique_ptr<rocksdb::DB> db(raw);
  rocksdb::WriteOptions write;
  write.disableWAL = true;  // Flushed below; a crash leaves only the tmp dir.
  std::error_code ec;
  const std::string source_dir =
      fs::absolute(fs::path(nomenclature_dir), ec).lexically_normal().string();
  rocksdb::WriteBatch meta;
  meta.Put(kFormatKey, kFormat);
  meta.Put(kSourceDirKey, ec ? nomenclature_dir : source_dir);
  meta.Put(kFingerprintKey, Fingerprint(nomenclature_dir));
  meta.Put(kSourcesKey, EncodeSources(labels.sources()));
  PASSERELLE_RETURN_IF_ERROR(
      FromRocks(db->Write(write, &meta), absl::StrCat("write ", path)));
  for (const Labels::Table& table : labels.tables()) {
    for (size_t c = 0; c < table.chunks.size(); ++c) {
      PASSERELLE_RETURN_IF_ERROR(FromRocks(
          db->Put(write, ChunkKey(table.vocabulary, static_cast<int>(c)),
                  *table.chunks[c]),
          absl::StrCat("write ", path)));
    }
  }
  PASSERELLE_RETURN_IF_ERROR(FromRocks(db->Flush(rocksdb::FlushOptions()),
                                       absl::StrCat("flush ", path)));
  return FromRocks(db->Close(), absl::StrCat("close ", path));
}

}  // namespace

absl::Status BuildIndex(const Labels& labels,
                        const std::string& nomenclature_dir,
                        const std::string& index_dir) {
  std::error_code ec;
  const bool exists = fs::exists(index_dir, ec);
  if (exists && !(fs::is_directory(index_dir, ec) &&
                  (fs::is_empty(index_dir, ec) || IsIndex(index_dir)))) {
    return absl::FailedPreconditionError(absl::StrCat(
        index_dir, " exists and is not a vocabulary index: not replaced"));
  }
  const std::string tmp = absl::StrCat(index_dir, ".tmp-", getpid());
  fs::remove_all(tmp, ec);
  absl::Status written = WriteIndex(labels, nomenclature_dir, tmp);
  if (!written.ok()) {
    fs::remove_all(tmp, ec);
    return written;
  }
  PASSERELLE_CRASH_POINT("vocab.index.after_write");
  if (exists) {
    // One atomic step: the new index takes the name, the old one moves to
    // the temporary name, and is then removed.
    if (renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, index_dir.c_str(),
                  RENAME_EXCHANGE) != 0) {
      const int error = errno;
      fs::remove_all(tmp, ec);
      return absl::UnavailableError(
          absl::StrCat("vocabulary index: cannot exchange ", tmp, " and ",
                       index_dir, ": ", std::strerror(error)));
    }
    PASSERELLE_CRASH_POINT("vocab.index.after_swap");
    fs::remove_all(tmp, ec);
    return absl::OkStatus();
  }
  fs::rename(tmp, index_dir, ec);
  if (ec) {
    std::error_code ignored;
    fs::remove_all(tmp, ignored);
    return absl::UnavailableError(
        absl::StrCat("vocabulary index: cannot rename ", tmp, " to ", index_dir,
                     ": ", ec.message()));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Labels>> Labels::LoadIndex(
    const std::string& index_dir, const LoadOptions& options,
    std::string* stale) {
  std::error_code ec;
  if (!fs::exists(fs::path(index_dir) / "CURRENT", ec)) {
    return absl::NotFoundError(absl::StrCat(
        "no vocabulary index at ", index_dir,
        " (build it with passerelle vocab index --index ", index_dir, ")"));
  }
  std::vector<bool> wanted(LabelledVocabularies().size(),
                           options.vocabularies.empty());
  for (const std::string& v : options.vocabularies) {
    if (!query::IsKnownVocabulary(v)) {
      return absl::InvalidArgumentError(
          absl::StrCat("\"", v, "\" is not a known vocabulary"));
    }
    for (size_t i = 0; i < wanted.size(); ++i) {
      if (query::VocabularyMatches(v, LabelledVocabularies()[i].vocabulary)) {
        wanted[i] = true;
      }
    }
  }
  rocksdb::Options db_options;
  rocksdb::DB* raw = nullptr;
  PASSERELLE_RETURN_IF_ERROR(
      FromRocks(rocksdb::DB::OpenForReadOnly(db_options, index_dir, &raw),
                absl::StrCat("open ", index_dir)));
  std::unique_ptr<rocksdb::DB> db(raw);
  auto damaged = [&](absl::string_view key, absl::string_view what) {
    return absl::DataLossError(
        absl::StrCat("vocabulary index ", index_dir, ": key ", key, " ", what,
                     "; rebuild it with passerelle vocab index"));
  };
  std::string value;
  rocksdb::Status s = db->Get(rocksdb::ReadOptions(), kFormatKey, &value);
  if (s.IsNotFound()) return damaged(kFormatKey, "is missing");
  PASSERELLE_RETURN_IF_ERROR(FromRocks(s, absl::StrCat("read ", index_dir)));
  if (value != kFormat) {
    return absl::FailedPreconditionError(
        absl::StrCat("vocabulary index ", index_dir, " has format \"", value,
                     "\", this passerelle reads \"", kFormat,
                     "\": rebuild it with passerelle vocab index"));
  }
  std::unique_ptr<Labels> labels(new Labels());
  s = db->Get(rocksdb::ReadOptions(), kSourcesKey, &value);
  if (!s.ok()) return damaged(kSourcesKey, "is missing");
  PASSERELLE_ASSIGN_OR_RETURN(labels->sources_,
                              DecodeSources(value, index_dir));
  for (SourceReport& r : labels->sources_) {
    for (size_t i = 0; i < wanted.size(); ++i) {
      if (LabelledVocabularies()[i].vocabulary == r.vocabulary) {
        r.requested = wanted[i];
      }
    }
  }
  for (size_t i = 0; i < wanted.size(); ++i) {
    if (!wanted[i]) continue;
    Table table;
    table.vocabulary = std::string(LabelledVocabularies()[i].vocabulary);
    const std::string prefix = absl::StrCat("t:", table.vocabulary, ":");
    // Read once, in order: no block cache, large reads.
    rocksdb::ReadOptions scan;
    scan.fill_cache = false;
    scan.readahead_size = 4 << 20;
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(scan));
    int expected_chunk = 0;
    for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix);
         it->Next()) {
      const std::string key = it->key().ToString();
      if (key != ChunkKey(table.vocabulary, expected_chunk++)) {
        return damaged(key, "is out of sequence");
      }
      table.chunks.push_back(
          std::make_unique<const std::string>(it->value().ToString()));
    }
    PASSERELLE_RETURN_IF_ERROR(
        FromRocks(it->status(), absl::StrCat("read ", index_dir)));
    if (absl::Status parsed = ParseChunks(&table); !parsed.ok()) {
      return absl::DataLossError(
          absl::StrCat("vocabulary index ", index_dir, ": ", parsed.message(),
                       "; rebuild it with passerelle vocab index"));
    }
    labels->tables_.push_back(std::move(table));
  }
  if (stale != nullptr) {
    stale->clear();
    std::string dir, fingerprint;
    if (db->Get(rocksdb::ReadOptions(), kSourceDirKey, &dir).ok() &&
        db->Get(rocksdb::ReadOptions(), kFingerprintKey, &fingerprint).ok() &&
        Fingerprint(dir) != fingerprint) {
      *stale = absl::StrCat("the nomenclature files in ", dir,
                            " have changed or moved since the index was "
                            "built: rebuild it with passerelle vocab index");
    }
  }
  return labels;
}

}  // namespace passerelle::vocab
