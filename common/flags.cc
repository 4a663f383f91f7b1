#include "common/flags.h"

#include "common/logging.h"

namespace xfer::common {

void add_config_flag(CLI::App& app) {
  app.set_config("--config", "",
                 "Read flags from a TOML/INI file (command-line flags override it)");
}

void add_log_level_flag(CLI::App& app, std::string& level) {
  app.add_option("--log-level", level, std::string("Log level: ") + log_level_names())
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}))
      ->capture_default_str();
}

std::optional<int> parse_flags(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);  // prints help for --help (exit 0), the error otherwise
  }
  return std::nullopt;
}

}  // namespace xfer::common
