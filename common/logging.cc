#include "common/logging.h"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <memory>
#include <stdexcept>

namespace xfer::common {
namespace {

// Set once in init_logging; set_log_rank rebuilds the pattern with it.
std::string g_component;  // NOLINT(runtime/string): process-wide logging state

std::string pattern_for(const std::string& who) {
  // spdlog's pattern language treats '%' specially; host and rank are literal.
  std::string escaped_host;
  for (char c : hostname()) {
    escaped_host += c;
    if (c == '%') escaped_host += '%';
  }
  return "%Y-%m-%d %H:%M:%S.%e %^%L%$ " + escaped_host + " " + who + " %v";
}

std::string who_for(std::optional<int> rank, const std::string& component) {
  if (rank) return "r" + std::to_string(*rank);
  return component.empty() ? std::string("-") : component;
}

std::optional<int> parse_rank(const char* text) {
  if (text == nullptr || *text == '\0') return std::nullopt;
  char* end = nullptr;
  const long value = std::strtol(text, &end, 10);
  if (*end != '\0' || value < 0 || value > INT_MAX) return std::nullopt;
  return static_cast<int>(value);
}

}  // namespace

std::string hostname() {
  char name[HOST_NAME_MAX + 1] = {};
  if (::gethostname(name, sizeof(name) - 1) != 0 || name[0] == '\0') return "unknown-host";
  return name;
}

std::optional<int> launcher_rank() {
  for (const char* var : {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID"}) {
    if (auto rank = parse_rank(std::getenv(var))) return rank;
  }
  return std::nullopt;
}

const char* log_level_names() { return "trace, debug, info, warn, error, critical, off"; }

void init_logging(const LogOptions& options) {
  const auto level = spdlog::level::from_str(options.level);
  // from_str maps unknown names to "off"; only "off" itself may mean off.
  if (level == spdlog::level::off && options.level != "off") {
    throw std::invalid_argument("unknown log level '" + options.level +
                                "' (expected one of: " + log_level_names() + ")");
  }
  g_component = options.component;
  spdlog::drop("xfer");  // a second init (tests, tools) replaces the first
  auto logger = spdlog::stderr_color_mt("xfer");
  spdlog::set_default_logger(logger);
  spdlog::set_level(level);
  spdlog::set_pattern(
      pattern_for(who_for(options.rank ? options.rank : launcher_rank(), options.component)));
  // Ranks die through MPI_Abort; what they logged must be out by then.
  spdlog::flush_on(spdlog::level::warn);
}

void set_log_rank(int rank) { spdlog::set_pattern(pattern_for(who_for(rank, g_component))); }

}  // namespace xfer::common
