// TFRecord framing, the container of TensorBoard event files. Each record:
//
//   uint64 length            little endian
//   uint32 masked_crc32c(the 8 length bytes)
//   byte   data[length]
//   uint32 masked_crc32c(data)
//
// (see crc32c.h for the mask). Appending records is all a writer does; the
// reader is for our own files (the restart check in run_event_writers.h and
// the tests).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace xfer::coordinator::tensorboard {

// Bytes of framing around each record's data.
inline constexpr std::size_t kRecordOverhead = 8 + 4 + 4;

// `data` framed as one record.
std::string frame_record(std::string_view data);

struct ParsedRecords {
  // The data of every record up to the first bad one.
  std::vector<std::string> records;
  // Offset just past the last good record.
  std::uint64_t good_bytes = 0;
  // Empty when every byte parsed; else what stopped the parse, with its
  // offset ("record 3 at offset 120: data CRC 0x... does not match ...").
  // A writer that crashed mid-record leaves a truncated tail: that is
  // reported here too ("truncated").
  std::string problem;
};

// Splits `bytes` into records, verifying both CRCs of each.
ParsedRecords parse_records(std::string_view bytes);

}  // namespace xfer::coordinator::tensorboard
