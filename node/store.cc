#include "node/store.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "common/crash_point.h"
#include "common/status_macros.h"
#include "rocksdb/db.h"
#include "rocksdb/options.h"
#include "rocksdb/sst_file_writer.h"
#include "rocksdb/write_batch.h"

namespace passerelle::node {
namespace {

constexpr size_t kPersonChunk = 1 << 16;
// Size at which a load starts a new SST file.
constexpr uint64_t kSstFileBytes = uint64_t{1} << 30;
// Format 3: as format 2, and a code whose posting is shared with a code
// earlier in key order (an OMOP concept id and its vocabulary code) is
// stored as one alias value naming that code, not as a copy of its columns.
// Format 2: postings in chunks of raw little-endian columns, keys
// "c/<CodeMapKey>\0<chunk, 8 hex digits>", written as SST files and ingested
// in one step. Format 1 (no "format=" line in meta): one value per code.
// Formats 1 and 2 are still read (equal postings are shared as they are
// read); a newer format is refused with an error naming it.
constexpr int kFormat = 3;
constexpr uint8_t kChunkTag = 0xC2;
constexpr size_t kChunkHeader = 1 + 4 + 4 + 1;
// Format 3 alias value: the tag, then the CodeMapKey of the code it shares.
constexpr uint8_t kAliasTag = 0xA3;

absl::Status FromRocks(const rocksdb::Status& s, absl::string_view what) {
  if (s.ok()) return absl::OkStatus();
  if (s.IsNotFound())
    return absl::NotFoundError(absl::StrCat(what, ": ", s.ToString()));
  if (s.IsCorruption())
    return absl::DataLossError(
        absl::StrCat("node store: ", what, ": ", s.ToString()));
  return absl::InternalError(
      absl::StrCat("node store: ", what, ": ", s.ToString()));
}

template <typename T>
void PutRaw(std::string* out, T v) {
  char buf[sizeof(T)];
  std::memcpy(buf, &v, sizeof(T));
  out->append(buf, sizeof(T));
}

// Reads fixed-width values from a stored buffer; every read is bounds-checked
// so a corrupted value yields an error, never a crash.
class Reader {
 public:
  explicit Reader(absl::string_view data) : data_(data) {}
  template <typename T>
  bool Get(T* v) {
    if (data_.size() < sizeof(T)) return false;
    std::memcpy(v, data_.data(), sizeof(T));
    data_.remove_prefix(sizeof(T));
    return true;
  }
  bool done() const { return data_.empty(); }

 private:
  absl::string_view data_;
};

std::string Prefix(absl::string_view version) {
  return absl::StrCat("s/", version, "/");
}

std::string EncodeMeta(const SnapshotMeta& m, int format) {
  return absl::StrCat("site=", m.site, "\nversion=", m.version,
                      "\nloaded_at=", m.loaded_at_unix, "\npersons=", m.persons,
                      "\nevents=", m.events, "\nformat=", format, "\n");
}

absl::Status DecodeMeta(absl::string_view text, SnapshotMeta* m, int* format) {
  *format = 1;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(line, absl::MaxSplits('=', 1));
    bool ok = true;
    if (kv.first == "site")
      m->site = std::string(kv.second);
    else if (kv.first == "version")
      m->version = std::string(kv.second);
    else if (kv.first == "loaded_at")
      ok = absl::SimpleAtoi(kv.second, &m->loaded_at_unix);
    else if (kv.first == "persons")
      ok = absl::SimpleAtoi(kv.second, &m->persons);
    else if (kv.first == "events")
      ok = absl::SimpleAtoi(kv.second, &m->events);
    else if (kv.first == "format")
      ok = absl::SimpleAtoi(kv.second, format);
    // Other keys (e.g. a data-derived snapshot_day of older stores) are
    // ignored: nothing of the node reads a date from its records.
    if (!ok)
      return absl::DataLossError(
          absl::StrCat("node store: bad meta line \"", line, "\""));
  }
  return absl::OkStatus();
}

// Format 1 (read only): one value per code, the columns one after another.
bool DecodePosting(absl::string_view data, uint32_t population, Posting* p) {
  Reader r(data);
  uint32_t n;
  uint8_t has_values;
  if (!r.Get(&n) || !r.Get(&has_values)) return false;
  if (data.size() !=
      5 + static_cast<size_t>(n) * (12 + 8 * (has_values ? 1 : 0)))
    return false;
  p->patients.resize(n);
  p->days.resize(n);
  p->events.resize(n);
  for (uint32_t i = 0; i < n; ++i) {
    if (!r.Get(&p->patients[i]) || p->patients[i] >= population) return false;
  }
  for (uint32_t i = 0; i < n; ++i) r.Get(&p->days[i]);
  for (uint32_t i = 0; i < n; ++i) r.Get(&p->events[i]);
  if (has_values) {
    p->values.resize(n);
    for (uint32_t i = 0; i < n; ++i) r.Get(&p->values[i]);
  }
  return r.done();
}

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "the store's columns are written in host order: little-endian");

// Discards RocksDB's info log: a snapshot directory never changes once
// sealed, and a read-only open would otherwise write (and rotate) LOG files.
class NullLogger : public rocksdb::Logger {
 public:
  using rocksdb::Logger::Logv;
  void Logv(const char*, va_list) override {}
};

rocksdb::Options StoreOptions() {
  rocksdb::Options options;
  options.create_if_missing = true;
  options.info_log = std::make_shared<NullLogger>();
  // Postings are raw integer columns read back in bulk: decompression cost
  // more at open than the disk it saved.
  options.compression = rocksdb::kNoCompression;
  return options;
}

std::string ChunkKey(const std::string& prefix, const std::string& code_key,
                     uint32_t chunk) {
  char suffix[10];
  snprintf(suffix, sizeof(suffix), "%08x", chunk);
  std::string key = absl::StrCat(prefix, "c/");
  key.append(code_key);
  key.push_back('\0');
  key.append(suffix, 8);
  return key;
}

// One chunk: tag, total events of the code, events here, has-values flag,
// then the columns (patients, days, events, values) raw.
void EncodeChunk(const Posting& p, size_t begin, size_t n, std::string* out) {
  const uint8_t has_values = p.values.empty() ? 0 : 1;
  out->clear();
  out->reserve(kChunkHeader + n * (12 + 8 * has_values));
  out->push_back(static_cast<char>(kChunkTag));
  PutRaw(out, static_cast<uint32_t>(p.size()));
  PutRaw(out, static_cast<uint32_t>(n));
  PutRaw(out, has_values);
  auto put_array = [&](const auto& column) {
    out->append(reinterpret_cast<const char*>(column.data() + begin),
                n * sizeof(column[0]));
  };
  put_array(p.patients);
  put_array(p.days);
  put_array(p.events);
  if (has_values) put_array(p.values);
}

template <typename T>
void AppendColumn(const char* src, size_t n, std::vector<T>* column) {
  const size_t old = column->size();
  column->resize(old + n);
  std::memcpy(column->data() + old, src, n * sizeof(T));
}

}  // namespace

absl::StatusOr<rocksdb::DB*> NodeStore::OpenSnapshotDb(const std::string& path,
                                                       bool read_only) {
  rocksdb::Options options = StoreOptions();
  rocksdb::DB* db = nullptr;
  rocksdb::Status s;
  if (read_only) {
    options.create_if_missing = false;
    s = rocksdb::DB::OpenForReadOnly(options, path, &db);
  } else {
    s = rocksdb::DB::Open(options, path, &db);
  }
  if (!s.ok()) {
    if (s.IsCorruption()) {
      return absl::DataLossError(absl::StrCat("node store: snapshot database ",
                                              path,
                                              " is corrupt: ", s.ToString()));
    }
    return absl::UnavailableError(absl::StrCat(
        "cannot open node store database ", path, ": ", s.ToString()));
  }
  return db;
}

absl::Status NodeStore::WriteSnapshotDb(rocksdb::DB* db,
                                        const std::string& scratch,
                                        const Snapshot& snap) {
  absl::MutexLock lock(&mu_);
  const std::string prefix = Prefix(snap.meta.version);
  // The snapshot is written as SST files in a scratch directory and ingested
  // in one atomic step (no WAL, no memtable, no compaction: each byte is
  // written once) into the snapshot's own empty database.
  std::error_code ec;
  std::filesystem::remove_all(scratch, ec);
  std::filesystem::create_directories(scratch, ec);
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("cannot create ", scratch, ": ", ec.message()));
  }
  // Removed on every return; a crash leaves it to the next commit.
  struct RemoveOnExit {
    const std::string& path;
    ~RemoveOnExit() {
      std::error_code ignored;
      std::filesystem::remove_all(path, ignored);
    }
  } remove_scratch{scratch};
  // SST keys must come in order: codes ("c/"), then "meta", then "p/".
  struct CodeRef {
    std::string key;
    const Posting* posting;
  };
  std::vector<CodeRef> codes;
  for (const auto& [tkey, table] : snap.tables) {
    if (table.codes.size() != table.postings.size()) {
      return absl::InvalidArgumentError("node store: ragged code table");
    }
    for (size_t i = 0; i < table.codes.size(); ++i) {
      if (table.postings[i] == nullptr) {
        return absl::InvalidArgumentError("node store: null posting");
      }
      codes.push_back({CodeMapKey(static_cast<v1::Domain>(tkey.first),
                                  tkey.second, table.codes[i]),
                       table.postings[i].get()});
    }
  }
  std::sort(codes.begin(), codes.end(),
            [](const CodeRef& a, const CodeRef& b) { return a.key < b.key; });
  for (size_t i = 1; i < codes.size(); ++i) {
    if (codes[i].key == codes[i - 1].key) {
      return absl::InvalidArgumentError("node store: a code appears twice");
    }
  }
  const rocksdb::Options options = StoreOptions();
  std::vector<std::string> files;
  std::unique_ptr<rocksdb::SstFileWriter> writer;
  auto finish_file = [&]() -> absl::Status {
    if (writer == nullptr) return absl::OkStatus();
    absl::Status st = FromRocks(writer->Finish(), "finish snapshot file");
    writer.reset();
    return st;
  };
  auto put = [&](const std::string& key,
                 absl::string_view value) -> absl::Status {
    PASSERELLE_CRASH_POINT("node.store.commit.put");
    if (writer != nullptr && writer->FileSize() >= kSstFileBytes) {
      PASSERELLE_RETURN_IF_ERROR(finish_file());
    }
    if (writer == nullptr) {
      writer = std::make_unique<rocksdb::SstFileWriter>(rocksdb::EnvOptions(),
                                                        options);
      char name[32];
      snprintf(name, sizeof(name), "%06zu.sst", files.size());
      files.push_back((std::filesystem::path(scratch) / name).string());
      PASSERELLE_RETURN_IF_ERROR(
          FromRocks(writer->Open(files.back()), "create snapshot file"));
    }
    return FromRocks(
        writer->Put(key, rocksdb::Slice(value.data(), value.size())),
        "write snapshot file");
  };
  std::string value;
  // The first code (in key order) of each shared posting holds its columns;
  // the others are aliases of it.
  absl::flat_hash_map<const Posting*, const std::string*> stored;
  for (const CodeRef& c : codes) {
    const Posting& p = *c.posting;
    auto [it, first] = stored.emplace(&p, &c.key);
    if (!first && !write_format2_) {
      value.clear();
      value.push_back(static_cast<char>(kAliasTag));
      value.append(*it->second);
      PASSERELLE_RETURN_IF_ERROR(put(ChunkKey(prefix, c.key, 0), value));
      continue;
    }
    if (p.days.size() != p.size() || p.events.size() != p.size() ||
        (!p.values.empty() && p.values.size() != p.size()) ||
        p.size() > UINT32_MAX) {
      return absl::InvalidArgumentError("node store: ragged posting");
    }
    size_t begin = 0;
    uint32_t chunk = 0;
    do {
      const size_t n = std::min<size_t>(posting_chunk_, p.size() - begin);
      EncodeChunk(p, begin, n, &value);
      PASSERELLE_RETURN_IF_ERROR(put(ChunkKey(prefix, c.key, chunk), value));
      begin += n;
      ++chunk;
    } while (begin < p.size());
  }
  PASSERELLE_RETURN_IF_ERROR(put(
      prefix + "meta", EncodeMeta(snap.meta, write_format2_ ? 2 : kFormat)));
  for (size_t start = 0; start < snap.size(); start += kPersonChunk) {
    const size_t end = std::min<size_t>(snap.size(), start + kPersonChunk);
    std::string chunk;
    chunk.reserve((end - start) * 6);
    for (size_t i = start; i < end; ++i) {
      PutRaw(&chunk, snap.birth_keys[i]);
      PutRaw(&chunk, snap.sex[i]);
      PutRaw(&chunk, static_cast<uint8_t>(snap.deceased.contains(i) ? 1 : 0));
    }
    char key[32];
    snprintf(key, sizeof(key), "p/%010zu", start);
    PASSERELLE_RETURN_IF_ERROR(put(prefix + key, chunk));
  }
  PASSERELLE_RETURN_IF_ERROR(finish_file());
  rocksdb::IngestExternalFileOptions ingest;
  ingest.move_files = true;
  ingest.write_global_seqno = false;
  PASSERELLE_CRASH_POINT("node.store.commit.before_ingest");
  PASSERELLE_RETURN_IF_ERROR(
      FromRocks(db->IngestExternalFile(files, ingest), "ingest snapshot"));
  std::filesystem::remove_all(scratch, ec);
  PASSERELLE_RETURN_IF_ERROR(PutCrosswalks(db, snap));
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<Snapshot>> NodeStore::ReadSnapshotDb(
    rocksdb::DB* db, const std::string& version) {
  const std::string prefix = Prefix(version);
  auto snap = std::make_shared<Snapshot>();
  std::string meta;
  PASSERELLE_RETURN_IF_ERROR(FromRocks(
      db->Get(rocksdb::ReadOptions(), prefix + "meta", &meta), "read meta"));
  int format = 1;
  PASSERELLE_RETURN_IF_ERROR(DecodeMeta(meta, &snap->meta, &format));
  if (format < 1 || format > kFormat) {
    return absl::DataLossError(absl::StrCat(
        "node store: snapshot ", version, " is in store format ", format,
        ", which this build does not read (it reads formats 1 to ", kFormat,
        "): use a newer passerelle or reload the data"));
  }
  if (snap->meta.persons < 0 || snap->meta.persons > UINT32_MAX) {
    return absl::DataLossError("node store: person count out of range");
  }
  snap->birth_keys.reserve(snap->meta.persons);
  snap->sex.reserve(snap->meta.persons);
  std::unique_ptr<rocksdb::Iterator> it(
      db->NewIterator(rocksdb::ReadOptions()));
  const std::string pp = prefix + "p/";
  for (it->Seek(pp); it->Valid() && it->key().starts_with(pp); it->Next()) {
    absl::string_view v(it->value().data(), it->value().size());
    if (v.size() % 6 != 0)
      return absl::DataLossError("node store: corrupt person chunk");
    Reader r(v);
    while (!r.done()) {
      int32_t key;
      uint8_t sex = 0, dead = 0;
      r.Get(&key);
      r.Get(&sex);
      r.Get(&dead);
      if (dead)
        snap->deceased.add(static_cast<uint32_t>(snap->birth_keys.size()));
      snap->birth_keys.push_back(key);
      snap->sex.push_back(sex);
    }
  }
  if (static_cast<int64_t>(snap->birth_keys.size()) != snap->meta.persons) {
    return absl::DataLossError("node store: person count does not match meta");
  }
  const std::string cp = prefix + "c/";
  // Formats 1 and 2 store every code's columns: equal ones are shared as
  // they are read (format 3 stores them shared).
  PostingDeduplicator dedup;
  if (format == 1) {
    for (it->Seek(cp); it->Valid() && it->key().starts_with(cp); it->Next()) {
      absl::string_view key(it->key().data(), it->key().size());
      key.remove_prefix(cp.size());
      const size_t nul = key.find('\0');
      if (key.size() < 2 || nul == absl::string_view::npos) {
        return absl::DataLossError("node store: corrupt code key");
      }
      const int domain = key[0] - '0';
      CodeTable& table =
          snap->tables[{domain, std::string(key.substr(1, nul - 1))}];
      table.codes.emplace_back(key.substr(nul + 1));
      auto posting = std::make_shared<Posting>();
      if (!DecodePosting(
              absl::string_view(it->value().data(), it->value().size()),
              snap->size(), posting.get())) {
        return absl::DataLossError(absl::StrCat(
            "node store: corrupt posting for ", table.codes.back()));
      }
      table.postings.push_back(dedup.Intern(std::move(posting)));
    }
  } else {
    // Large sequential reads straight into the columns.
    rocksdb::ReadOptions bulk;
    bulk.fill_cache = false;
    bulk.readahead_size = 8 << 20;
    it.reset(db->NewIterator(bulk));
    std::string current;  // CodeMapKey of the last code read.
    // The posting being filled (null after an alias) and its table slot.
    std::shared_ptr<Posting> posting;
    std::shared_ptr<Posting>* slot = nullptr;
    // Format 3: the postings read so far by CodeMapKey, for aliases.
    absl::flat_hash_map<std::string, std::shared_ptr<Posting>> by_key;
    uint32_t total = 0, chunks = 0;
    bool has_values = false;
    auto corrupt = [&](absl::string_view what) {
      return absl::DataLossError(absl::StrCat("node store: corrupt posting ",
                                              absl::CHexEscape(current), ": ",
                                              what));
    };
    // Checks that the posting being filled is complete and, for the older
    // formats, shares it with an equal one read before.
    auto finish_posting = [&]() -> absl::Status {
      if (posting == nullptr) return absl::OkStatus();
      if (posting->size() != total) return corrupt("missing chunk");
      if (format < 3) *slot = dedup.Intern(std::move(posting));
      posting = nullptr;
      slot = nullptr;
      return absl::OkStatus();
    };
    bool any = false;
    for (it->Seek(cp); it->Valid() && it->key().starts_with(cp); it->Next()) {
      absl::string_view key(it->key().data(), it->key().size());
      key.remove_prefix(cp.size());
      const size_t last = key.rfind('\0');
      const size_t nul = key.find('\0');
      if (key.size() < 2 || last == absl::string_view::npos || last == nul ||
          key.size() - last != 9) {
        return absl::DataLossError("node store: corrupt code key");
      }
      uint32_t chunk = 0;
      if (!absl::SimpleHexAtoi(key.substr(last + 1), &chunk)) {
        return absl::DataLossError("node store: corrupt code key");
      }
      const absl::string_view code_key = key.substr(0, last);
      absl::string_view v(it->value().data(), it->value().size());
      const bool new_code = !any || code_key != current;
      if (new_code) PASSERELLE_RETURN_IF_ERROR(finish_posting());
      if (format >= 3 && !v.empty() &&
          static_cast<uint8_t>(v[0]) == kAliasTag) {
        current = std::string(code_key);
        any = true;
        if (!new_code || chunk != 0) return corrupt("alias out of order");
        auto target = by_key.find(v.substr(1));
        if (target == by_key.end()) return corrupt("alias of an unknown code");
        const int domain = code_key[0] - '0';
        CodeTable& table =
            snap->tables[{domain, std::string(code_key.substr(1, nul - 1))}];
        table.codes.emplace_back(code_key.substr(nul + 1));
        table.postings.push_back(target->second);
        continue;
      }
      Reader r(v);
      uint8_t tag = 0, hv = 0;
      uint32_t code_total = 0, n = 0;
      if (!r.Get(&tag) || tag != kChunkTag || !r.Get(&code_total) ||
          !r.Get(&n) || !r.Get(&hv) || hv > 1 ||
          v.size() != kChunkHeader + static_cast<size_t>(n) * (12 + 8 * hv)) {
        current = std::string(code_key);
        return corrupt("bad chunk header or size");
      }
      if (new_code) {
        current = std::string(code_key);
        any = true;
        const int domain = code_key[0] - '0';
        CodeTable& table =
            snap->tables[{domain, std::string(code_key.substr(1, nul - 1))}];
        table.codes.emplace_back(code_key.substr(nul + 1));
        posting = std::make_shared<Posting>();
        table.postings.push_back(posting);
        slot = &table.postings.back();
        if (format >= 3) by_key.emplace(current, posting);
        total = code_total;
        chunks = 0;
        has_values = hv != 0;
        posting->patients.reserve(total);
        posting->days.reserve(total);
        posting->events.reserve(total);
        if (has_values) posting->values.reserve(total);
      } else if (posting == nullptr) {
        return corrupt("chunk after an alias");
      }
      if (chunk != chunks || code_total != total || (hv != 0) != has_values ||
          posting->size() + n > total) {
        return corrupt("chunks out of order");
      }
      ++chunks;
      const char* data = v.data() + kChunkHeader;
      const size_t old = posting->size();
      AppendColumn(data, n, &posting->patients);
      AppendColumn(data + 4 * size_t{n}, n, &posting->days);
      AppendColumn(data + 8 * size_t{n}, n, &posting->events);
      if (has_values) AppendColumn(data + 12 * size_t{n}, n, &posting->values);
      uint32_t max_patient = 0;
      for (size_t i = old; i < posting->patients.size(); ++i) {
        max_patient = std::max(max_patient, posting->patients[i]);
      }
      if (n > 0 && max_patient >= snap->size())
        return corrupt("patient out of range");
    }
    PASSERELLE_RETURN_IF_ERROR(finish_posting());
  }
  PASSERELLE_RETURN_IF_ERROR(FromRocks(it->status(), "read snapshot"));
  PASSERELLE_ASSIGN_OR_RETURN(snap->crosswalks, ReadCrosswalks(db, version));
  snap->Finish();
  return snap;
}

// ---------------------------------------------------------------------------
// Crosswalk sets: one value per snapshot, "x/<version>" = "<id>\n<encoded
// set>" (node/crosswalk.h), written before the snapshot is made current.

namespace {
constexpr char kCrosswalkPrefix[] = "x/";
constexpr size_t kMappingSetDigits = 12;
}  // namespace

std::string VersionWithMappingSet(absl::string_view base,
                                  absl::string_view mapping_set) {
  if (mapping_set.empty()) return std::string(base);
  return absl::StrCat(base, "-m", mapping_set.substr(0, kMappingSetDigits));
}

std::string MappingSetOfVersion(absl::string_view version) {
  const size_t dash = version.rfind("-m");
  if (dash == absl::string_view::npos ||
      version.size() - dash - 2 != kMappingSetDigits) {
    return "";
  }
  const absl::string_view digits = version.substr(dash + 2);
  for (char c : digits) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return "";
  }
  return std::string(digits);
}

absl::Status NodeStore::PutCrosswalks(rocksdb::DB* db, const Snapshot& snap) {
  const std::string named = MappingSetOfVersion(snap.meta.version);
  const std::string id =
      snap.crosswalks == nullptr ? "" : snap.crosswalks->id();
  if (named != id.substr(0, kMappingSetDigits)) {
    return absl::InvalidArgumentError(
        absl::StrCat("node store: snapshot ", snap.meta.version,
                     " does not name its mapping set ",
                     id.empty() ? "(none)" : id, " (VersionWithMappingSet)"));
  }
  if (id.empty()) return absl::OkStatus();
  rocksdb::WriteOptions sync;
  sync.sync = true;
  return FromRocks(
      db->Put(sync, absl::StrCat(kCrosswalkPrefix, snap.meta.version),
              absl::StrCat(id, "\n", snap.crosswalks->Encode())),
      "write crosswalk set");
}

absl::StatusOr<std::shared_ptr<const CrosswalkSet>> NodeStore::ReadCrosswalks(
    rocksdb::DB* db, absl::string_view version) {
  const std::string named = MappingSetOfVersion(version);
  if (named.empty()) return std::shared_ptr<const CrosswalkSet>();
  std::string value;
  rocksdb::Status s = db->Get(rocksdb::ReadOptions(),
                              absl::StrCat(kCrosswalkPrefix, version), &value);
  if (s.IsNotFound()) {
    return absl::DataLossError(absl::StrCat(
        "node store: snapshot ", version, " names mapping set ", named,
        " but its crosswalk tables are missing; reload the data"));
  }
  PASSERELLE_RETURN_IF_ERROR(FromRocks(s, "read crosswalk set"));
  const size_t nl = value.find('\n');
  if (nl == std::string::npos || value.compare(0, named.size(), named) != 0) {
    return absl::DataLossError(absl::StrCat(
        "node store: crosswalk set of snapshot ", version, " is corrupt"));
  }
  return CrosswalkSet::Decode(absl::string_view(value).substr(nl + 1),
                              absl::string_view(value).substr(0, nl));
}

}  // namespace passerelle::node
