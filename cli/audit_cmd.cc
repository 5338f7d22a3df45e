#include "cli/audit_cmd.h"

#include <iostream>

#include "audit/tool.h"

namespace passerelle::cli {

// The logic lives in audit/tool.h so it is unit-tested without the binary.
int RunAuditCommand(const std::vector<std::string>& args) {
  return audit::RunAuditTool(args, std::cout, std::cerr);
}

}  // namespace passerelle::cli
