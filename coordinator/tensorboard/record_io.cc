#include "coordinator/tensorboard/record_io.h"

#include <cstdio>

#include "coordinator/tensorboard/crc32c.h"

namespace xfer::coordinator::tensorboard {
namespace {

// Fixed-width little-endian integers, byte by byte so the host's byte order
// does not matter.
template <typename T>
void put_le(std::string& out, T value) {
  for (std::size_t i = 0; i < sizeof(T); ++i) {
    out.push_back(static_cast<char>((value >> (8 * i)) & 0xFFu));
  }
}

template <typename T>
T get_le(std::string_view bytes) {
  T value = 0;
  for (std::size_t i = 0; i < sizeof(T); ++i) {
    value |= static_cast<T>(static_cast<unsigned char>(bytes[i])) << (8 * i);
  }
  return value;
}

std::string hex(std::uint32_t value) {
  char text[16];
  std::snprintf(text, sizeof(text), "0x%08x", value);
  return text;
}

}  // namespace

std::string frame_record(std::string_view data) {
  std::string out;
  out.reserve(data.size() + kRecordOverhead);
  put_le<std::uint64_t>(out, data.size());
  put_le<std::uint32_t>(out, mask_crc(crc32c(out)));
  out.append(data);
  put_le<std::uint32_t>(out, mask_crc(crc32c(data)));
  return out;
}

ParsedRecords parse_records(std::string_view bytes) {
  ParsedRecords parsed;
  std::uint64_t offset = 0;
  while (offset < bytes.size()) {
    const std::string where = "record " + std::to_string(parsed.records.size() + 1) +
                              " at offset " + std::to_string(offset) + ": ";
    const std::string_view rest = bytes.substr(offset);
    if (rest.size() < 12) {
      parsed.problem =
          where + "truncated header (" + std::to_string(rest.size()) + " bytes, expected 12)";
      return parsed;
    }
    const auto length = get_le<std::uint64_t>(rest);
    const auto length_crc = get_le<std::uint32_t>(rest.substr(8));
    const std::uint32_t expected_length_crc = mask_crc(crc32c(rest.substr(0, 8)));
    if (length_crc != expected_length_crc) {
      parsed.problem = where + "length CRC " + hex(length_crc) + " does not match " +
                       hex(expected_length_crc) + " (corrupt length)";
      return parsed;
    }
    if (length > rest.size() - 12 || rest.size() - 12 - length < 4) {
      parsed.problem = where + "truncated (length " + std::to_string(length) + ", only " +
                       std::to_string(rest.size() - 12) + " bytes follow the header)";
      return parsed;
    }
    const std::string_view data = rest.substr(12, length);
    const auto data_crc = get_le<std::uint32_t>(rest.substr(12 + length));
    const std::uint32_t expected_data_crc = mask_crc(crc32c(data));
    if (data_crc != expected_data_crc) {
      parsed.problem = where + "data CRC " + hex(data_crc) + " does not match " +
                       hex(expected_data_crc) + " (corrupt data)";
      return parsed;
    }
    parsed.records.emplace_back(data);
    offset += length + kRecordOverhead;
    parsed.good_bytes = offset;
  }
  return parsed;
}

}  // namespace xfer::coordinator::tensorboard
