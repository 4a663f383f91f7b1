#include "common/flags.h"

#include <iostream>

#include "common/logging.h"

namespace xfer::common {

void add_config_flag(CLI::App& app) {
  app.set_config("--config", "",
                 "Read flags from a TOML/INI file (command-line flags override it)");
  // A misspelled key would otherwise be ignored, and its default used silently.
  app.allow_config_extras(CLI::config_extras_mode::error);
}

void add_log_level_flag(CLI::App& app, std::string& level) {
  app.add_option("--log-level", level, std::string("Log level: ") + log_level_names())
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}))
      ->capture_default_str();
}

std::optional<int> parse_flags(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::ConfigError& e) {
    // CLI11 says "INI was not able to parse SECTION.KEY" for a key that names
    // no flag: say which file and what a key must be.
    const std::string message = e.what();
    const std::string prefix = "INI was not able to parse ";
    if (message.rfind(prefix, 0) == 0) {
      std::cerr << "--config " << app.get_config_ptr()->as<std::string>() << ": unknown key '"
                << message.substr(prefix.size())
                << "' (expected the long name of a flag, without '--', e.g. 'batch-size = 32'; "
                   "a subcommand's flags under its [section])\n";
      return kExitUsage;
    }
    return app.exit(e) == 0 ? 0 : kExitUsage;
  } catch (const CLI::ParseError& e) {
    // Prints help for --help (exit 0), the error otherwise.
    return app.exit(e) == 0 ? 0 : kExitUsage;
  }
  return std::nullopt;
}

}  // namespace xfer::common
