// Signed checkpoints in the C2SP tlog-checkpoint format, wrapped in a C2SP
// signed note with an Ed25519 signature:
//
//   <origin>\n
//   <tree size, decimal>\n
//   <root hash, standard base64>\n
//   \n
//   — <key name> <base64(key hash (4 bytes) || Ed25519 signature (64 bytes))>\n
//
// The signature covers the first three lines, newlines included. The key
// hash is the first 4 bytes of SHA-256(key name || "\n" || 0x01 || public
// key), as in golang.org/x/mod/sumdb/note, so `NoteVerifierKey` can be given
// to Go's note.NewVerifier to check our checkpoints independently.
#ifndef PASSERELLE_AUDIT_CHECKPOINT_H_
#define PASSERELLE_AUDIT_CHECKPOINT_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "audit/signer.h"

namespace passerelle::audit {

struct Checkpoint {
  std::string origin;
  uint64_t size = 0;
  std::string root_hash;  // 32 bytes.

  bool operator==(const Checkpoint& o) const {
    return origin == o.origin && size == o.size && root_hash == o.root_hash;
  }
};

// The signed body: "<origin>\n<size>\n<base64 root>\n".
std::string CheckpointBody(const Checkpoint& checkpoint);

// The 4-byte signed-note key hash of an Ed25519 key.
std::string NoteKeyHash(absl::string_view key_name,
                        absl::string_view public_key);
// "<name>+<hex key hash>+<base64(0x01 || public key)>".
std::string NoteVerifierKey(absl::string_view key_name,
                            absl::string_view public_key);

// Signs `text` (one or more lines, each ending in '\n', none empty) as a
// signed note with one Ed25519 signature line.
absl::StatusOr<std::string> SignNote(absl::string_view text,
                                     absl::string_view key_name,
                                     const SigningKey& key);
// Returns the text of `note` if one of its signature lines is a valid
// signature by `key` under `key_name`; kUnauthenticated otherwise,
// kInvalidArgument when malformed.
absl::StatusOr<std::string> OpenNote(absl::string_view note,
                                     absl::string_view key_name,
                                     const VerifyingKey& key);

// The full signed note for `checkpoint`. The key name must be non-empty and
// contain no whitespace or '+'.
absl::StatusOr<std::string> SignCheckpoint(const Checkpoint& checkpoint,
                                           absl::string_view key_name,
                                           const SigningKey& key);

// Parses a note's checkpoint body without checking any signature.
absl::StatusOr<Checkpoint> ParseCheckpointNote(absl::string_view note);

// Parses `note` and checks that it carries a valid signature by `key` under
// `key_name`; kUnauthenticated when no such signature verifies,
// kInvalidArgument when the text is malformed.
absl::StatusOr<Checkpoint> OpenCheckpoint(absl::string_view note,
                                          absl::string_view key_name,
                                          const VerifyingKey& key);

}  // namespace passerelle::audit

#endif  // PASSERELLE_AUDIT_CHECKPOINT_H_
