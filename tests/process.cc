#include "tests/process.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"

extern char** environ;

namespace passerelle::testing {
namespace {

std::vector<char*> Argv(const std::vector<std::string>& argv) {
  std::vector<char*> out;
  for (const std::string& a : argv) out.push_back(const_cast<char*>(a.c_str()));
  out.push_back(nullptr);
  return out;
}

absl::StatusOr<pid_t> Spawn(const std::vector<std::string>& argv,
                            const std::string& out_path,
                            const std::string& err_path) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, out_path.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&actions, 2, err_path.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  // Children start with the default signal mask and dispositions.
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t empty, all;
  sigemptyset(&empty);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &empty);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  pid_t pid;
  std::vector<char*> args = Argv(argv);
  const int rc =
      posix_spawn(&pid, args[0], &actions, &attr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    return absl::InternalError(
        absl::StrCat("cannot start ", argv[0], ": ", strerror(rc)));
  }
  return pid;
}

int ExitCode(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

}  // namespace

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void WriteFile(const std::string& path, const std::string& content) {
  std::filesystem::create_directories(
      std::filesystem::path(path).parent_path());
  std::ofstream(path) << content;
}

absl::StatusOr<CommandResult> RunCommand(const std::vector<std::string>& argv) {
  TempDir tmp;
  absl::StatusOr<pid_t> pid = Spawn(argv, tmp.Sub("out"), tmp.Sub("err"));
  if (!pid.ok()) return pid.status();
  int status = 0;
  waitpid(*pid, &status, 0);
  CommandResult r;
  r.exit_code = ExitCode(status);
  r.out = ReadFile(tmp.Sub("out"));
  r.err = ReadFile(tmp.Sub("err"));
  return r;
}

absl::StatusOr<Process> Process::Start(const std::vector<std::string>& argv,
                                       const std::string& log_path) {
  absl::StatusOr<pid_t> pid = Spawn(argv, log_path + ".out", log_path);
  if (!pid.ok()) return pid.status();
  return Process(*pid, log_path);
}

Process::Process(Process&& other) noexcept
    : pid_(other.pid_), log_(std::move(other.log_)), status_(other.status_) {
  other.pid_ = -1;
}

Process& Process::operator=(Process&& other) noexcept {
  if (this != &other) {
    if (pid_ > 0 && status_ < 0) {
      kill(pid_, SIGKILL);
      Wait();
    }
    pid_ = other.pid_;
    log_ = std::move(other.log_);
    status_ = other.status_;
    other.pid_ = -1;
  }
  return *this;
}

Process::~Process() {
  if (pid_ > 0 && status_ < 0) {
    kill(pid_, SIGKILL);
    Wait();
  }
}

bool Process::running() {
  if (pid_ <= 0 || status_ >= 0) return false;
  int st;
  pid_t r = waitpid(pid_, &st, WNOHANG);
  if (r == pid_) {
    status_ = ExitCode(st);
    return false;
  }
  return true;
}

void Process::Signal(int sig) {
  if (pid_ > 0 && status_ < 0) kill(pid_, sig);
}

int Process::Wait() {
  if (pid_ <= 0) return -1;
  if (status_ < 0) {
    int st = 0;
    waitpid(pid_, &st, 0);
    status_ = ExitCode(st);
  }
  return status_;
}

std::string Process::Log() const { return ReadFile(log_); }

absl::StatusOr<int> WaitForPortFile(const std::string& path, Process& process,
                                    absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    std::string text = ReadFile(path);
    int port;
    if (!text.empty() && text.back() == '\n' &&
        absl::SimpleAtoi(absl::StripTrailingAsciiWhitespace(text), &port)) {
      return port;
    }
    if (!process.running()) {
      return absl::InternalError(
          absl::StrCat("server exited before listening:\n", process.Log()));
    }
    absl::SleepFor(absl::Milliseconds(20));  // Polling a condition, bounded.
  }
  return absl::DeadlineExceededError(
      absl::StrCat("no port in ", path, ":\n", process.Log()));
}

TempDir::TempDir() {
  std::string tmpl =
      (std::filesystem::temp_directory_path() / "passerelle-test-XXXXXX")
          .string();
  path_ = mkdtemp(tmpl.data());
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::string SourceDir() {
  const char* s = std::getenv("PASSERELLE_SOURCE_DIR");
#ifdef PASSERELLE_DEFAULT_SOURCE_DIR
  if (s == nullptr) return PASSERELLE_DEFAULT_SOURCE_DIR;
#endif
  return s ? s : ".";
}

std::string SharedDir() {
  std::filesystem::path p =
      std::filesystem::path(SourceDir()) / ".." / "shared";
  return std::filesystem::exists(p / "data") ? p.lexically_normal().string()
                                             : "";
}

std::string PasserelleBin() {
  const char* s = std::getenv("PASSERELLE_BIN");
#ifdef PASSERELLE_DEFAULT_BIN
  if (s == nullptr) return PASSERELLE_DEFAULT_BIN;
#endif
  return s ? s : "passerelle";
}

}  // namespace passerelle::testing
