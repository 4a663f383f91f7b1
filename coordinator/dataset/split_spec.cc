#include "coordinator/dataset/split_spec.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <limits>

namespace xfer::coordinator::dataset {
namespace {

// Bounds beyond this are rejected before any arithmetic can overflow.
constexpr std::int64_t kMaxBound = std::int64_t{1} << 50;

[[noreturn]] void fail(std::string_view spec, const std::string& problem) {
  throw SplitSpecError("invalid split spec '" + std::string(spec) + "': " + problem);
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

bool is_name_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
}

struct Bound {
  std::optional<std::int64_t> value;
  bool percent = false;
};

// Parses one side of a slice: "", "20", "-5", "1_000", "20%", "-10%".
Bound parse_bound(std::string_view spec, std::string_view term, std::string_view text) {
  Bound bound;
  if (text.empty()) return bound;
  std::string_view rest = text;
  if (rest.size() >= 5 && rest.substr(rest.size() - 5) == "shard") {
    fail(spec, "shard slices like '" + std::string(term) +
                   "' are not supported (the CIFAR-100 files have no shards); use "
                   "absolute or percent bounds");
  }
  if (!rest.empty() && rest.back() == '%') {
    bound.percent = true;
    rest.remove_suffix(1);
  }
  bool negative = false;
  if (!rest.empty() && rest.front() == '-') {
    negative = true;
    rest.remove_prefix(1);
  }
  const std::string expected =
      "expected an integer such as 20, -5 or 1_000, optionally followed by %";
  if (rest.empty() || rest.front() == '_' || rest.back() == '_') {
    fail(spec,
         "bad bound '" + std::string(text) + "' in '" + std::string(term) + "' (" + expected + ")");
  }
  std::int64_t value = 0;
  char previous = '\0';
  for (char c : rest) {
    if (c == '_') {
      if (previous == '_') {
        fail(spec, "bad bound '" + std::string(text) + "' in '" + std::string(term) + "' (" +
                       expected + ")");
      }
    } else if (std::isdigit(static_cast<unsigned char>(c))) {
      value = value * 10 + (c - '0');
      if (value > kMaxBound) {
        fail(spec, "bound '" + std::string(text) + "' in '" + std::string(term) + "' is too large");
      }
    } else {
      fail(spec, "bad bound '" + std::string(text) + "' in '" + std::string(term) + "' (" +
                     expected + ")");
    }
    previous = c;
  }
  bound.value = negative ? -value : value;
  if (bound.percent && (*bound.value < -100 || *bound.value > 100)) {
    fail(spec, "percent bound " + std::string(text) + " in '" + std::string(term) +
                   "' is out of range (expected -100% to 100%)");
  }
  return bound;
}

SplitSlice parse_term(std::string_view spec, std::string_view term) {
  if (term.empty()) {
    fail(spec, "empty term (expected split names joined by '+', e.g. 'train[:50%]+test')");
  }
  SplitSlice slice;
  std::size_t i = 0;
  while (i < term.size() && is_name_char(term[i])) ++i;
  slice.split = std::string(term.substr(0, i));
  if (slice.split.empty()) {
    fail(spec, "term '" + std::string(term) +
                   "' does not start with a split name (expected e.g. 'train' or 'test[:10%]')");
  }
  if (i == term.size()) return slice;
  if (term[i] != '[') {
    fail(spec, "unexpected '" + std::string(1, term[i]) + "' in '" + std::string(term) +
                   "' (expected a split name, optionally followed by a slice like [:20%])");
  }
  if (term.back() != ']') {
    fail(spec, "term '" + std::string(term) + "' has no closing ']' at its end");
  }
  const std::string_view selector = term.substr(i + 1, term.size() - i - 2);
  const std::size_t colon = selector.find(':');
  if (colon == std::string_view::npos) {
    fail(spec, "'" + std::string(term) + "' is a single index; only slices are supported (e.g. '" +
                   slice.split + "[" + std::string(selector) + ":]' or '" + slice.split +
                   "[:" + std::string(selector) + "]')");
  }
  if (selector.find(':', colon + 1) != std::string_view::npos) {
    fail(spec, "'" + std::string(term) + "' has more than one ':' (steps are not supported)");
  }
  const Bound from = parse_bound(spec, term, trim(selector.substr(0, colon)));
  const Bound to = parse_bound(spec, term, trim(selector.substr(colon + 1)));
  if (!from.value && !to.value) {
    fail(spec, "'" + std::string(term) + "' has an empty slice (expected at least one bound)");
  }
  if (from.value && to.value && from.percent != to.percent) {
    fail(spec, "'" + std::string(term) +
                   "' mixes a percent and an absolute bound (expected both in % or neither)");
  }
  slice.from = from.value;
  slice.to = to.value;
  slice.unit = (from.percent || to.percent) ? SliceUnit::kPercent : SliceUnit::kAbsolute;
  return slice;
}

// round(p * n / 100) with halves to even, exactly (no floating point).
std::int64_t percent_to_index(std::int64_t percent, std::int64_t n) {
  const std::int64_t scaled = percent * n;  // |percent| <= 100, n <= kMaxBound: no overflow
  const std::int64_t magnitude = scaled < 0 ? -scaled : scaled;
  std::int64_t quotient = magnitude / 100;
  const std::int64_t remainder = magnitude % 100;
  if (remainder > 50 || (remainder == 50 && quotient % 2 == 1)) ++quotient;
  return scaled < 0 ? -quotient : quotient;
}

std::string known_splits(const std::map<std::string, std::int64_t>& split_sizes) {
  std::string known;
  for (const auto& [name, size] : split_sizes) {
    known += (known.empty() ? "" : ", ") + name + " (" + std::to_string(size) + " records)";
  }
  return known.empty() ? std::string("none") : known;
}

}  // namespace

std::string SplitSlice::to_string() const {
  if (!from && !to) return split;
  const char* unit_suffix = unit == SliceUnit::kPercent ? "%" : "";
  std::string text = split + "[";
  if (from) text += std::to_string(*from) + unit_suffix;
  text += ":";
  if (to) text += std::to_string(*to) + unit_suffix;
  return text + "]";
}

bool SplitSlice::operator==(const SplitSlice& other) const {
  return split == other.split && from == other.from && to == other.to && unit == other.unit;
}

SplitSpec SplitSpec::parse(std::string_view text) {
  const std::string_view spec = trim(text);
  if (spec.empty()) {
    fail(text, "empty spec (expected e.g. 'train', 'train[:20%]' or 'train[:50%]+test')");
  }
  SplitSpec parsed;
  std::size_t start = 0;
  while (true) {
    const std::size_t plus = spec.find('+', start);
    const std::string_view term =
        trim(spec.substr(start, plus == std::string_view::npos ? spec.npos : plus - start));
    parsed.slices_.push_back(parse_term(spec, term));
    if (plus == std::string_view::npos) break;
    start = plus + 1;
  }
  return parsed;
}

std::string SplitSpec::to_string() const {
  std::string text;
  for (const auto& slice : slices_) text += (text.empty() ? "" : "+") + slice.to_string();
  return text;
}

bool IndexRange::operator==(const IndexRange& other) const {
  return split == other.split && begin == other.begin && end == other.end;
}

std::int64_t ResolvedSplit::size() const {
  std::int64_t total = 0;
  for (const auto& range : ranges) total += range.size();
  return total;
}

std::string ResolvedSplit::to_absolute_spec() const {
  std::string text;
  for (const auto& range : ranges) {
    text += (text.empty() ? "" : "+") + range.split + "[" + std::to_string(range.begin) + ":" +
            std::to_string(range.end) + "]";
  }
  return text;
}

std::pair<const std::string*, std::int64_t> ResolvedSplit::locate(std::int64_t position) const {
  if (position >= 0) {
    std::int64_t offset = position;
    for (const auto& range : ranges) {
      if (offset < range.size()) return {&range.split, range.begin + offset};
      offset -= range.size();
    }
  }
  throw std::out_of_range("position " + std::to_string(position) + " is outside split '" + spec +
                          "' of " + std::to_string(size()) + " records");
}

ResolvedSplit resolve_split(const SplitSpec& spec,
                            const std::map<std::string, std::int64_t>& split_sizes) {
  const std::string text = spec.to_string();
  ResolvedSplit resolved;
  resolved.spec = text;
  for (const SplitSlice& slice : spec.slices()) {
    const auto it = split_sizes.find(slice.split);
    if (it == split_sizes.end()) {
      fail(text, "unknown split '" + slice.split +
                     "' (expected one of: " + known_splits(split_sizes) + ")");
    }
    const std::int64_t n = it->second;
    std::int64_t from = slice.from.value_or(0);
    std::int64_t to = slice.to ? *slice.to : n;
    if (slice.unit == SliceUnit::kPercent) {
      from = slice.from ? percent_to_index(*slice.from, n) : 0;
      to = slice.to ? percent_to_index(*slice.to, n) : n;
    } else if (std::abs(from) > n || std::abs(to) > n) {
      fail(text, "'" + slice.to_string() + "' is out of range for split '" + slice.split + "' of " +
                     std::to_string(n) + " records (expected bounds in -" + std::to_string(n) +
                     ".." + std::to_string(n) + ")");
    }
    if (from < 0) from += n;
    if (to < 0) to += n;
    if (from > to) {
      fail(text, "'" + slice.to_string() + "' starts at record " + std::to_string(from) +
                     " after it ends at record " + std::to_string(to) + " (split '" + slice.split +
                     "' has " + std::to_string(n) + " records)");
    }
    const IndexRange range{slice.split, from, to};
    for (const IndexRange& other : resolved.ranges) {
      const std::int64_t lo = std::max(other.begin, range.begin);
      const std::int64_t hi = std::min(other.end, range.end);
      if (other.split == range.split && lo < hi) {
        fail(text, "terms overlap on records " + std::to_string(lo) + ".." +
                       std::to_string(hi - 1) + " of split '" + range.split +
                       "' (each record may be selected once)");
      }
    }
    if (range.size() > 0) resolved.ranges.push_back(range);
  }
  if (resolved.ranges.empty()) {
    fail(text, "selects no records (splits: " + known_splits(split_sizes) + ")");
  }
  return resolved;
}

ResolvedSplit resolve_split(std::string_view spec,
                            const std::map<std::string, std::int64_t>& split_sizes) {
  return resolve_split(SplitSpec::parse(spec), split_sizes);
}

std::vector<ResolvedSplit> even_splits(const ResolvedSplit& split, int n, Remainder remainder) {
  if (n < 1) {
    throw SplitSpecError("even_splits of '" + split.spec + "': n = " + std::to_string(n) +
                         " (expected n >= 1)");
  }
  std::vector<ResolvedSplit> parts(static_cast<std::size_t>(n));
  for (const IndexRange& range : split.ranges) {
    const std::int64_t per_part = range.size() / n;
    const std::int64_t extra = remainder == Remainder::kDistribute ? range.size() % n : 0;
    for (int i = 0; i < n; ++i) {
      const std::int64_t begin = range.begin + per_part * i + std::min<std::int64_t>(i, extra);
      const std::int64_t end =
          range.begin + per_part * (i + 1) + std::min<std::int64_t>(i + 1, extra);
      if (end > begin)
        parts[static_cast<std::size_t>(i)].ranges.push_back({range.split, begin, end});
    }
  }
  for (auto& part : parts) part.spec = part.to_absolute_spec();
  return parts;
}

}  // namespace xfer::coordinator::dataset
