// coordctl's command line and commands, as a library: coordctl_main.cc only
// calls run_coordctl(). Parsing is separate from executing so usage errors
// are tested without a server, and execute() takes any CoordinatorClient.
//
//   coordctl [--coordinator ADDR] [--token-file F] [--tls-ca F] [--json] COMMAND
//     status [RUN] | runs | metrics RUN [--csv] | ranks RUN |
//     watch RUN [--from N] [--interval S] [--threshold F]
//     checkpoints list RUN | best RUN [--phase P] | latest RUN [--phase P] |
//                 get ID -o FILE | delete ID
//     report RUN [--confusion] [-o FILE.html]
//
// See docs/coordctl.md for every flag, the JSON fields and the exit codes.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <variant>
#include <vector>

#include "coordinator/client/client_options.h"
#include "coordinator/client/coordinator_client.h"
#include "coordinator/coordctl/stragglers.h"

namespace xfer::coordinator::coordctl {

// Exit codes (documented in docs/coordctl.md; scripts rely on them).
inline constexpr int kExitOk = 0;
inline constexpr int kExitInternal = 1;       // a bug: an unexpected exception
inline constexpr int kExitUsage = 2;          // bad command line
inline constexpr int kExitRpc = 3;            // the coordinator refused or could not be reached
inline constexpr int kExitLocal = 4;          // a local file: token, CA, output
inline constexpr int kExitChecksum = 5;       // a download did not match its SHA-256
inline constexpr int kExitRunFailed = 6;      // watch: the run ended FAILED
inline constexpr int kExitInterrupted = 130;  // watch: Ctrl-C (SIGINT) or SIGTERM (128 + 2)

struct GlobalOptions {
  // Default: 127.0.0.1:50051 (or $XFER_COORDINATOR).
  std::string coordinator = "127.0.0.1:50051";
  // Default: none (or $XFER_TOKEN_FILE).
  std::string token_file;
  // Default: none (plaintext).
  std::string tls_ca;
  std::string tls_server_name;
  // Machine-readable output instead of tables. Default: false.
  bool json = false;
  // Deadline of each call attempt, seconds. Default: 30. REQUIRES: > 0.
  double timeout_s = 30.0;
  // How long to keep retrying an unreachable coordinator, seconds. A person
  // at a terminal wants an answer soon. Default: 10. REQUIRES: >= 0.
  double retry_for_s = 10.0;
  // Default: warn (retries show on stderr; info is noise for a CLI).
  std::string log_level = "warn";
};

enum class CommandKind {
  kStatus,
  kRuns,
  kMetrics,
  kRanks,
  kWatch,
  kCheckpointsList,
  kCheckpointsBest,
  kCheckpointsLatest,
  kCheckpointsGet,
  kCheckpointsDelete,
  kReport,
};

struct Command {
  CommandKind kind = CommandKind::kStatus;
  std::string run;     // status (optional), metrics, ranks, watch, checkpoints list/best/latest
  std::string id;      // checkpoints get/delete
  std::string output;  // checkpoints get -o; report -o (the HTML report)
  std::string expect_sha256;  // checkpoints get --sha256
  std::string verify_run;     // checkpoints get --run: look the SHA-256 up in its List
  bool csv = false;           // metrics --csv
  double straggler_threshold = kDefaultStragglerThreshold;  // ranks, watch --threshold
  std::int64_t from_sequence = 0;                           // watch --from
  std::string phase;                                        // checkpoints best/latest --phase
  bool confusion = false;                                   // report --confusion
  // watch --interval: seconds between Ranks polls of the live view.
  double interval_s = 1.0;
  // watch: redraw a live view in place (stdout is a terminal and no --json)
  // instead of one line per event. Set by run_coordctl, not a flag.
  bool live = false;
};

struct CommandLine {
  GlobalOptions global;
  Command command;
};

// Parses `args` (without the program name). Returns the command line, or
// the exit code to stop with: kExitOk after --help (help on `out`),
// kExitUsage for a bad command line (the problem on `err`).
std::variant<CommandLine, int> parse_command_line(const std::vector<std::string>& args,
                                                  std::ostream& out, std::ostream& err);

// The client options the global flags ask for.
client::ClientOptions client_options(const GlobalOptions& global);

// Runs the command; prints results on `out`. Returns kExitOk, or
// kExitRunFailed / kExitRpc for outcomes that are not exceptions. Throws
// RpcError, ClientError, ChecksumError (run_coordctl maps them to codes).
int execute(const CommandLine& line, client::CoordinatorClient& client, std::ostream& out,
            std::ostream& err);

// The whole program: parse, set up logging, connect, execute, and turn every
// error into one line on `err` and an exit code. `watch` shows its live view
// when `out` is std::cout, stdout is a terminal and --json is not given.
int run_coordctl(int argc, const char* const* argv, std::ostream& out, std::ostream& err);

}  // namespace xfer::coordinator::coordctl
