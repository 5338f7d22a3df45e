// `passerelle audit ...`: the auditor's commands over an audit store.
#ifndef PASSERELLE_CLI_AUDIT_CMD_H_
#define PASSERELLE_CLI_AUDIT_CMD_H_

#include <string>
#include <vector>

namespace passerelle::cli {

// `args` excludes "passerelle audit". Commands: verify, show N, search,
// export --format jsonl|fhir, proof --index N [--size S],
// consistency --from A --to B, checkpoint, public-key; each takes
// --store DIR (and verify --public-key FILE). Returns the exit code.
int RunAuditCommand(const std::vector<std::string>& args);

}  // namespace passerelle::cli

#endif  // PASSERELLE_CLI_AUDIT_CMD_H_
