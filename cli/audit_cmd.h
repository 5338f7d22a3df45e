// `passerelle audit ...`: the auditor's commands over an audit store.
#ifndef PASSERELLE_CLI_AUDIT_CMD_H_
#define PASSERELLE_CLI_AUDIT_CMD_H_

#include <string>
#include <vector>

namespace passerelle::cli {

// `args` excludes "passerelle audit". Commands: verify, show N, search,
// export --format jsonl|fhir, proof --index N [--size S],
// consistency --from A --to B, crosscheck, checkpoint, public-key; each
// takes --store DIR (and verify --public-key FILE), or, for a remote log
// over mTLS, --config CLIENT.textproto or --gateway/--node HOST:PORT with
// --ca/--cert/--key/--server-name (cli/client.h), and the log's public key
// as --public-key FILE: the client checks everything the server sends.
// Returns the exit code (0 ok, 1 failure, 2 usage).
int RunAuditCommand(const std::vector<std::string>& args);

}  // namespace passerelle::cli

#endif  // PASSERELLE_CLI_AUDIT_CMD_H_
