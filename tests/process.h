// Child processes for multi-process tests: run a command to completion and
// capture its output, or start a daemon and stop it with a signal.
#ifndef PASSERELLE_TESTS_PROCESS_H_
#define PASSERELLE_TESTS_PROCESS_H_

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace passerelle::testing {

struct CommandResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// Runs argv[0] (a path) with its arguments and waits for it.
absl::StatusOr<CommandResult> RunCommand(const std::vector<std::string>& argv);

// A started child whose stderr goes to a log file. Not thread-safe.
class Process {
 public:
  static absl::StatusOr<Process> Start(const std::vector<std::string>& argv,
                                       const std::string& log_path);
  Process(Process&& other) noexcept;
  Process& operator=(Process&& other) noexcept;
  ~Process();  // SIGKILLs a child still running.

  pid_t pid() const { return pid_; }
  bool running();
  void Signal(int sig);
  // Waits for exit; returns the exit code, or 128+signal.
  int Wait();
  std::string Log() const;

 private:
  Process(pid_t pid, std::string log) : pid_(pid), log_(std::move(log)) {}
  pid_t pid_ = -1;
  std::string log_;
  int status_ = -1;
};

// Polls until `path` holds a non-empty line (a port written by a server),
// failing when `process` exits first or the timeout passes.
absl::StatusOr<int> WaitForPortFile(const std::string& path, Process& process,
                                    absl::Duration timeout = absl::Seconds(30));

// A fresh temporary directory, removed with everything in it on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

std::string ReadFile(const std::string& path);
void WriteFile(const std::string& path, const std::string& content);

// The shared/ folder beside the project, or "" when it is absent.
std::string SharedDir();
// The `passerelle` binary under test ($PASSERELLE_BIN).
std::string PasserelleBin();
std::string SourceDir();

}  // namespace passerelle::testing

#endif  // PASSERELLE_TESTS_PROCESS_H_
