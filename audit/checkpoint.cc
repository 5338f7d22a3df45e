#include "audit/checkpoint.h"

#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "audit/merkle.h"
#include "common/status_macros.h"

namespace passerelle::audit {
namespace {

constexpr absl::string_view kEmDash = "\xE2\x80\x94";
constexpr char kEd25519Algorithm = 0x01;

absl::Status CheckKeyName(absl::string_view name) {
  if (name.empty()) return absl::InvalidArgumentError("empty key name");
  for (char c : name) {
    if (c == '+' || static_cast<unsigned char>(c) <= ' ') {
      return absl::InvalidArgumentError(
          absl::StrCat("key name '", name, "' contains '+' or whitespace"));
    }
  }
  return absl::OkStatus();
}

struct SplitNote {
  absl::string_view body;        // Up to and including the body's last '\n'.
  absl::string_view signatures;  // After the blank line.
};

absl::StatusOr<SplitNote> Split(absl::string_view note) {
  // The body never contains an empty line, so the first "\n\n" separates it.
  const size_t sep = note.find("\n\n");
  if (sep == absl::string_view::npos) {
    return absl::InvalidArgumentError(
        "note has no blank line before "
        "its signatures");
  }
  SplitNote out;
  out.body = note.substr(0, sep + 1);
  out.signatures = note.substr(sep + 2);
  if (out.signatures.empty() || out.signatures.back() != '\n') {
    return absl::InvalidArgumentError("note signatures must end in a newline");
  }
  return out;
}

absl::StatusOr<Checkpoint> ParseBody(absl::string_view body) {
  std::vector<absl::string_view> lines = absl::StrSplit(body, '\n');
  // The body ends in '\n', so the last split piece is empty.
  if (lines.size() < 4 || !lines.back().empty()) {
    return absl::InvalidArgumentError("checkpoint needs origin, size and root");
  }
  Checkpoint cp;
  cp.origin = std::string(lines[0]);
  if (cp.origin.empty()) {
    return absl::InvalidArgumentError("checkpoint origin is empty");
  }
  const absl::string_view size = lines[1];
  if (size.empty() || (size.size() > 1 && size[0] == '0') ||
      size.find_first_not_of("0123456789") != absl::string_view::npos ||
      !absl::SimpleAtoi(size, &cp.size)) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad checkpoint tree size '", size, "'"));
  }
  if (!absl::Base64Unescape(lines[2], &cp.root_hash) ||
      cp.root_hash.size() != kHashSize ||
      absl::Base64Escape(cp.root_hash) != lines[2]) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad checkpoint root hash '", lines[2], "'"));
  }
  // Lines after the third are extensions; this log writes none and the
  // signature covers them anyway.
  return cp;
}

}  // namespace

std::string CheckpointBody(const Checkpoint& checkpoint) {
  return absl::StrCat(checkpoint.origin, "\n", checkpoint.size, "\n",
                      absl::Base64Escape(checkpoint.root_hash), "\n");
}

std::string NoteKeyHash(absl::string_view key_name,
                        absl::string_view public_key) {
  return Sha256(absl::StrCat(key_name, "\n",
                             absl::string_view(&kEd25519Algorithm, 1),
                             public_key))
      .substr(0, 4);
}

std::string NoteVerifierKey(absl::string_view key_name,
                            absl::string_view public_key) {
  return absl::StrCat(
      key_name, "+", absl::BytesToHexString(NoteKeyHash(key_name, public_key)),
      "+",
      absl::Base64Escape(
          absl::StrCat(absl::string_view(&kEd25519Algorithm, 1), public_key)));
}

absl::StatusOr<std::string> SignNote(absl::string_view text,
                                     absl::string_view key_name,
                                     const SigningKey& key) {
  PASSERELLE_RETURN_IF_ERROR(CheckKeyName(key_name));
  if (text.empty() || text.back() != '\n' ||
      text.find("\n\n") != absl::string_view::npos) {
    return absl::InvalidArgumentError(
        "note text must end in a newline and contain no blank line");
  }
  PASSERELLE_ASSIGN_OR_RETURN(std::string sig, key.Sign(text));
  return absl::StrCat(text, "\n", kEmDash, " ", key_name, " ",
                      absl::Base64Escape(absl::StrCat(
                          NoteKeyHash(key_name, key.public_key()), sig)),
                      "\n");
}

absl::StatusOr<std::string> OpenNote(absl::string_view note,
                                     absl::string_view key_name,
                                     const VerifyingKey& key) {
  PASSERELLE_ASSIGN_OR_RETURN(SplitNote split, Split(note));
  const std::string want_hash = NoteKeyHash(key_name, key.raw());
  absl::string_view sigs = split.signatures;
  sigs.remove_suffix(1);  // The final '\n'.
  for (absl::string_view line : absl::StrSplit(sigs, '\n')) {
    if (!absl::ConsumePrefix(&line, kEmDash) ||
        !absl::ConsumePrefix(&line, " ")) {
      return absl::InvalidArgumentError(
          "malformed signature line (want '\xE2\x80\x94 <name> <base64>')");
    }
    const size_t space = line.find(' ');
    if (space == absl::string_view::npos) {
      return absl::InvalidArgumentError("signature line has no signature");
    }
    if (line.substr(0, space) != key_name) continue;
    std::string blob;
    if (!absl::Base64Unescape(line.substr(space + 1), &blob) ||
        blob.size() < 5) {
      return absl::InvalidArgumentError("signature is not base64");
    }
    if (blob.substr(0, 4) != want_hash) continue;
    PASSERELLE_RETURN_IF_ERROR(key.Verify(split.body, blob.substr(4)));
    return std::string(split.body);
  }
  return absl::UnauthenticatedError(
      absl::StrCat("note carries no signature by key '", key_name, "' (",
                   absl::BytesToHexString(want_hash), ")"));
}

absl::StatusOr<std::string> SignCheckpoint(const Checkpoint& checkpoint,
                                           absl::string_view key_name,
                                           const SigningKey& key) {
  if (checkpoint.origin.empty() ||
      checkpoint.origin.find('\n') != std::string::npos) {
    return absl::InvalidArgumentError("checkpoint origin must be one line");
  }
  if (checkpoint.root_hash.size() != kHashSize) {
    return absl::InvalidArgumentError("checkpoint root must be 32 bytes");
  }
  return SignNote(CheckpointBody(checkpoint), key_name, key);
}

absl::StatusOr<Checkpoint> ParseCheckpointNote(absl::string_view note) {
  PASSERELLE_ASSIGN_OR_RETURN(SplitNote split, Split(note));
  return ParseBody(split.body);
}

absl::StatusOr<Checkpoint> OpenCheckpoint(absl::string_view note,
                                          absl::string_view key_name,
                                          const VerifyingKey& key) {
  PASSERELLE_ASSIGN_OR_RETURN(std::string body, OpenNote(note, key_name, key));
  return ParseBody(body);
}

}  // namespace passerelle::audit
