#include "node/store.h"

#include <cmath>
#include <cstring>
#include <filesystem>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "common/status_macros.h"
#include "rocksdb/db.h"
#include "rocksdb/write_batch.h"

namespace passerelle::node {
namespace {

constexpr char kCurrentKey[] = "CURRENT";
constexpr char kSeqKey[] = "SEQ";
constexpr size_t kPersonChunk = 1 << 16;
constexpr size_t kBatchBytes = 8 << 20;

absl::Status FromRocks(const rocksdb::Status& s, absl::string_view what) {
  if (s.ok()) return absl::OkStatus();
  if (s.IsNotFound()) return absl::NotFoundError(absl::StrCat(what, ": ", s.ToString()));
  return absl::InternalError(absl::StrCat("node store: ", what, ": ", s.ToString()));
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

std::string EncodeMeta(const SnapshotMeta& m) {
  return absl::StrCat("site=", m.site, "\nversion=", m.version,
                      "\nsnapshot_day=", m.snapshot_day,
                      "\nloaded_at=", m.loaded_at_unix,
                      "\npersons=", m.persons, "\nevents=", m.events, "\n");
}

absl::Status DecodeMeta(absl::string_view text, SnapshotMeta* m) {
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(line, absl::MaxSplits('=', 1));
    bool ok = true;
    if (kv.first == "site") m->site = std::string(kv.second);
    else if (kv.first == "version") m->version = std::string(kv.second);
    else if (kv.first == "snapshot_day") ok = absl::SimpleAtoi(kv.second, &m->snapshot_day);
    else if (kv.first == "loaded_at") ok = absl::SimpleAtoi(kv.second, &m->loaded_at_unix);
    else if (kv.first == "persons") ok = absl::SimpleAtoi(kv.second, &m->persons);
    else if (kv.first == "events") ok = absl::SimpleAtoi(kv.second, &m->events);
    if (!ok) return absl::DataLossError(absl::StrCat("node store: bad meta line \"", line, "\""));
  }
  return absl::OkStatus();
}

std::string EncodePosting(const Posting& p) {
  std::string out;
  const uint32_t n = static_cast<uint32_t>(p.size());
  const uint8_t has_values = p.values.empty() ? 0 : 1;
  out.reserve(5 + n * (12 + 8 * has_values));
  PutRaw(&out, n);
  PutRaw(&out, has_values);
  for (uint32_t i = 0; i < n; ++i) PutRaw(&out, p.patients[i]);
  for (uint32_t i = 0; i < n; ++i) PutRaw(&out, p.days[i]);
  for (uint32_t i = 0; i < n; ++i) PutRaw(&out, p.events[i]);
  if (has_values) {
    for (uint32_t i = 0; i < n; ++i) PutRaw(&out, p.values[i]);
  }
  return out;
}

bool DecodePosting(absl::string_view data, uint32_t population, Posting* p) {
  Reader r(data);
  uint32_t n;
  uint8_t has_values;
  if (!r.Get(&n) || !r.Get(&has_values)) return false;
  if (data.size() != 5 + static_cast<size_t>(n) * (12 + 8 * (has_values ? 1 : 0))) return false;
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

}  // namespace

absl::StatusOr<std::unique_ptr<NodeStore>> NodeStore::Open(
    const std::string& dir) {
  rocksdb::Options options;
  options.create_if_missing = true;
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("cannot create node store directory ", dir, ": ", ec.message()));
  }
  rocksdb::DB* db = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(options, dir, &db);
  if (!s.ok()) {
    return absl::UnavailableError(
        absl::StrCat("cannot open node store at ", dir, ": ", s.ToString()));
  }
  return std::unique_ptr<NodeStore>(new NodeStore(db));
}

NodeStore::~NodeStore() { delete db_; }

absl::StatusOr<std::string> NodeStore::NextVersion(absl::string_view site,
                                                   int64_t now_unix) {
  absl::MutexLock lock(&mu_);
  std::string value;
  int64_t seq = 0;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), kSeqKey, &value);
  if (s.ok()) {
    if (!absl::SimpleAtoi(value, &seq)) {
      return absl::DataLossError("node store: corrupt snapshot sequence");
    }
  } else if (!s.IsNotFound()) {
    return FromRocks(s, "read sequence");
  }
  ++seq;
  rocksdb::WriteOptions wo;
  wo.sync = true;
  PASSERELLE_RETURN_IF_ERROR(
      FromRocks(db_->Put(wo, kSeqKey, absl::StrCat(seq)), "write sequence"));
  return absl::StrCat(site, "-",
                      absl::FormatTime("%Y%m%dT%H%M%SZ",
                                       absl::FromUnixSeconds(now_unix),
                                       absl::UTCTimeZone()),
                      "-", seq);
}

absl::Status NodeStore::Commit(const Snapshot& snap) {
  absl::MutexLock lock(&mu_);
  const std::string prefix = Prefix(snap.meta.version);
  rocksdb::WriteOptions wo;
  rocksdb::WriteBatch batch;
  auto flush = [&](bool force) -> absl::Status {
    if (batch.Count() == 0 || (!force && batch.GetDataSize() < kBatchBytes)) {
      return absl::OkStatus();
    }
    absl::Status st = FromRocks(db_->Write(wo, &batch), "write snapshot");
    batch.Clear();
    return st;
  };
  batch.Put(prefix + "meta", EncodeMeta(snap.meta));
  for (size_t start = 0; start < snap.size(); start += kPersonChunk) {
    const size_t end = std::min<size_t>(snap.size(), start + kPersonChunk);
    std::string chunk;
    for (size_t i = start; i < end; ++i) {
      PutRaw(&chunk, snap.birth_keys[i]);
      PutRaw(&chunk, snap.sex[i]);
      PutRaw(&chunk, static_cast<uint8_t>(snap.deceased.contains(i) ? 1 : 0));
    }
    char key[32];
    snprintf(key, sizeof(key), "p/%010zu", start);
    batch.Put(prefix + key, chunk);
    PASSERELLE_RETURN_IF_ERROR(flush(false));
  }
  for (const auto& [tkey, table] : snap.tables) {
    for (size_t i = 0; i < table.codes.size(); ++i) {
      std::string key = absl::StrCat(prefix, "c/");
      key.append(CodeMapKey(static_cast<v1::Domain>(tkey.first), tkey.second,
                            table.codes[i]));
      batch.Put(key, EncodePosting(table.postings[i]));
      PASSERELLE_RETURN_IF_ERROR(flush(false));
    }
  }
  PASSERELLE_RETURN_IF_ERROR(flush(true));
  // Everything above is in the WAL; the switch is the one synced write.
  PASSERELLE_RETURN_IF_ERROR(FromRocks(db_->FlushWAL(true), "sync snapshot"));
  rocksdb::WriteOptions sync;
  sync.sync = true;
  PASSERELLE_RETURN_IF_ERROR(
      FromRocks(db_->Put(sync, kCurrentKey, snap.meta.version), "switch snapshot"));
  return DropAllExcept(snap.meta.version);
}

absl::Status NodeStore::DropAllExcept(const std::string& version) {
  // Snapshot prefixes are "s/<version>/"; delete every other one, including
  // the leftovers of an interrupted load.
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  std::vector<std::string> others;
  for (it->Seek("s/"); it->Valid() && it->key().starts_with("s/");) {
    absl::string_view key(it->key().data(), it->key().size());
    const size_t slash = key.find('/', 2);
    if (slash == absl::string_view::npos) break;
    std::string v(key.substr(2, slash - 2));
    std::string next = absl::StrCat("s/", v, "0");  // '0' follows '/'.
    if (v != version) others.push_back(v);
    it->Seek(next);
  }
  PASSERELLE_RETURN_IF_ERROR(FromRocks(it->status(), "scan snapshots"));
  for (const std::string& v : others) {
    PASSERELLE_RETURN_IF_ERROR(FromRocks(
        db_->DeleteRange(rocksdb::WriteOptions(), db_->DefaultColumnFamily(),
                         Prefix(v), absl::StrCat("s/", v, "0")),
        "drop old snapshot"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<Snapshot>> NodeStore::LoadCurrent() {
  absl::MutexLock lock(&mu_);
  std::string version;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), kCurrentKey, &version);
  if (s.IsNotFound()) {
    return absl::NotFoundError("node store holds no snapshot yet (run `passerelle node load`)");
  }
  PASSERELLE_RETURN_IF_ERROR(FromRocks(s, "read current snapshot"));
  const std::string prefix = Prefix(version);
  auto snap = std::make_shared<Snapshot>();
  std::string meta;
  PASSERELLE_RETURN_IF_ERROR(
      FromRocks(db_->Get(rocksdb::ReadOptions(), prefix + "meta", &meta), "read meta"));
  PASSERELLE_RETURN_IF_ERROR(DecodeMeta(meta, &snap->meta));
  if (snap->meta.persons < 0 || snap->meta.persons > UINT32_MAX) {
    return absl::DataLossError("node store: person count out of range");
  }
  snap->birth_keys.reserve(snap->meta.persons);
  snap->sex.reserve(snap->meta.persons);
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  const std::string pp = prefix + "p/";
  for (it->Seek(pp); it->Valid() && it->key().starts_with(pp); it->Next()) {
    absl::string_view v(it->value().data(), it->value().size());
    if (v.size() % 6 != 0) return absl::DataLossError("node store: corrupt person chunk");
    Reader r(v);
    while (!r.done()) {
      int32_t key;
      uint8_t sex = 0, dead = 0;
      r.Get(&key);
      r.Get(&sex);
      r.Get(&dead);
      if (dead) snap->deceased.add(static_cast<uint32_t>(snap->birth_keys.size()));
      snap->birth_keys.push_back(key);
      snap->sex.push_back(sex);
    }
  }
  if (static_cast<int64_t>(snap->birth_keys.size()) != snap->meta.persons) {
    return absl::DataLossError("node store: person count does not match meta");
  }
  const std::string cp = prefix + "c/";
  for (it->Seek(cp); it->Valid() && it->key().starts_with(cp); it->Next()) {
    absl::string_view key(it->key().data(), it->key().size());
    key.remove_prefix(cp.size());
    const size_t nul = key.find('\0');
    if (key.size() < 2 || nul == absl::string_view::npos) {
      return absl::DataLossError("node store: corrupt code key");
    }
    const int domain = key[0] - '0';
    CodeTable& table = snap->tables[{domain, std::string(key.substr(1, nul - 1))}];
    table.codes.emplace_back(key.substr(nul + 1));
    if (!DecodePosting(absl::string_view(it->value().data(), it->value().size()),
                       snap->size(), &table.postings.emplace_back())) {
      return absl::DataLossError(absl::StrCat("node store: corrupt posting for ",
                                              table.codes.back()));
    }
  }
  PASSERELLE_RETURN_IF_ERROR(FromRocks(it->status(), "read snapshot"));
  snap->Finish();
  return snap;
}

}  // namespace passerelle::node
