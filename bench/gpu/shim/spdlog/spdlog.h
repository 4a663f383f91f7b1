// A stand-in for <spdlog/spdlog.h> for the standalone GPU benchmark build
// (bench/gpu/CMakeLists.txt) only: the GPU machine has no spdlog or fmt, and
// the model sources log two lines through spdlog::info. Never on the include
// path of the repository's own build, which uses the real spdlog.
//
// Supports what the model sources use: spdlog::{trace,debug,info,warn,error,
// critical}(format, args...) where each "{}" (or "{:spec}", whose spec is
// ignored) takes the next argument through operator<<, and "{{"/"}}" print a
// brace. Lines go to stderr as "[level] message". trace and debug print
// nothing (spdlog's default level is info).
#pragma once

#include <iostream>
#include <sstream>
#include <string_view>

#define XFER_SPDLOG_SHIM 1

namespace spdlog {
namespace shim_detail {

// Copies `format` up to its next replacement field into `out`; returns the
// rest after that field, or an empty view with *found = false at the end.
inline std::string_view copy_to_field(std::ostringstream& out, std::string_view format,
                                      bool* found) {
  *found = false;
  size_t i = 0;
  while (i < format.size()) {
    const char c = format[i];
    if ((c == '{' || c == '}') && i + 1 < format.size() && format[i + 1] == c) {
      out << c;
      i += 2;
    } else if (c == '{') {
      const size_t close = format.find('}', i);
      if (close == std::string_view::npos) break;
      *found = true;
      return format.substr(close + 1);
    } else {
      out << c;
      ++i;
    }
  }
  out << format.substr(i);
  return {};
}

inline void format_into(std::ostringstream& out, std::string_view format) {
  bool found = false;
  while (!format.empty()) {
    format = copy_to_field(out, format, &found);
    if (found) out << "{}";  // more fields than arguments: show them as spdlog would not
  }
}

template <typename T, typename... Rest>
void format_into(std::ostringstream& out, std::string_view format, const T& value,
                 const Rest&... rest) {
  bool found = false;
  format = copy_to_field(out, format, &found);
  if (!found) return;  // more arguments than fields: the extra ones are dropped
  out << value;
  format_into(out, format, rest...);
}

template <typename... Args>
void log(const char* level, std::string_view format, const Args&... args) {
  std::ostringstream out;
  out << '[' << level << "] ";
  format_into(out, format, args...);
  out << '\n';
  std::cerr << out.str();
}

}  // namespace shim_detail

template <typename... Args>
void trace(std::string_view, const Args&...) {}
template <typename... Args>
void debug(std::string_view, const Args&...) {}
template <typename... Args>
void info(std::string_view format, const Args&... args) {
  shim_detail::log("info", format, args...);
}
template <typename... Args>
void warn(std::string_view format, const Args&... args) {
  shim_detail::log("warning", format, args...);
}
template <typename... Args>
void error(std::string_view format, const Args&... args) {
  shim_detail::log("error", format, args...);
}
template <typename... Args>
void critical(std::string_view format, const Args&... args) {
  shim_detail::log("critical", format, args...);
}

}  // namespace spdlog
