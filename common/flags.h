// Helpers every binary's flag parsing shares (CLI11).
#pragma once

#include <CLI/CLI.hpp>
#include <optional>
#include <string>

namespace xfer::common {

// Exit status of a usage error (a bad, missing or unknown flag or value), in
// every binary: 2, as coordctl and most Unix tools, not CLI11's own codes
// (105 for a value out of range, 106 for a missing flag, ...).
inline constexpr int kExitUsage = 2;

// Adds --config FILE: a TOML/INI file whose keys are the long flag names
// (`batch-size = 32`). Flags on the command line override the file. A key
// that names no flag is a usage error (CLI11's "INI was not able to parse").
void add_config_flag(CLI::App& app);

// Adds --log-level LEVEL (validated) bound to `level`.
void add_log_level_flag(CLI::App& app, std::string& level);

// Parses argv. Returns the exit code when the program must stop now: after
// --help or --version (0) or a bad flag (kExitUsage, CLI11's message on
// stderr). Returns std::nullopt when the flags parsed and the program goes on.
std::optional<int> parse_flags(CLI::App& app, int argc, char** argv);

}  // namespace xfer::common
