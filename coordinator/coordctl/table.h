// Aligned plain-text tables for people: a header, a rule, one line per row,
// columns separated by two spaces, numbers right-aligned.
#pragma once

#include <string>
#include <vector>

namespace xfer::coordinator::coordctl {

class Table {
 public:
  enum class Align { kLeft, kRight };
  struct Column {
    std::string header;
    Align align = Align::kLeft;
  };

  explicit Table(std::vector<Column> columns);

  // REQUIRES: cells.size() == number of columns (std::invalid_argument).
  void add_row(std::vector<std::string> cells);
  bool empty() const { return rows_.empty(); }

  // Every line ends in '\n' and carries no trailing spaces.
  std::string render() const;

 private:
  std::vector<Column> columns_;
  std::vector<std::vector<std::string>> rows_;
};

}  // namespace xfer::coordinator::coordctl
