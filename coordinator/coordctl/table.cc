#include "coordinator/coordctl/table.h"

#include <algorithm>
#include <stdexcept>

namespace xfer::coordinator::coordctl {

namespace {

// Display width: counts UTF-8 code points, not bytes, so a "µ" or "—" in a
// cell does not shift the columns.
std::size_t display_width(const std::string& text) {
  return static_cast<std::size_t>(std::count_if(text.begin(), text.end(), [](char c) {
    return (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  }));
}

void append_line(std::string& out, const std::vector<std::string>& cells,
                 const std::vector<Table::Column>& columns,
                 const std::vector<std::size_t>& widths) {
  std::string line;
  for (std::size_t i = 0; i < cells.size(); ++i) {
    if (i > 0) line += "  ";
    const std::size_t pad = widths[i] - display_width(cells[i]);
    if (columns[i].align == Table::Align::kRight) {
      line.append(pad, ' ');
      line += cells[i];
    } else {
      line += cells[i];
      line.append(pad, ' ');
    }
  }
  line.erase(line.find_last_not_of(' ') + 1);
  out += line;
  out += '\n';
}

}  // namespace

Table::Table(std::vector<Column> columns) : columns_(std::move(columns)) {}

void Table::add_row(std::vector<std::string> cells) {
  if (cells.size() != columns_.size()) {
    throw std::invalid_argument("Table::add_row: " + std::to_string(cells.size()) + " cells for " +
                                std::to_string(columns_.size()) + " columns");
  }
  rows_.push_back(std::move(cells));
}

std::string Table::render() const {
  std::vector<std::size_t> widths(columns_.size());
  std::vector<std::string> headers;
  std::vector<std::string> rules;
  for (std::size_t i = 0; i < columns_.size(); ++i) {
    widths[i] = display_width(columns_[i].header);
    for (const auto& row : rows_) widths[i] = std::max(widths[i], display_width(row[i]));
    headers.push_back(columns_[i].header);
    rules.push_back(std::string(widths[i], '-'));
  }
  std::string out;
  append_line(out, headers, columns_, widths);
  append_line(out, rules, columns_, widths);
  for (const auto& row : rows_) append_line(out, row, columns_, widths);
  return out;
}

}  // namespace xfer::coordinator::coordctl
