// The report as files, for people and for pandas:
//   report.json    to_json(report)
//   classes.csv    index,label,precision,recall,f1,support   (one row per class)
//   confusion.csv  true\predicted,<label0>,<label1>,...       (header), then one
//                  row per true class: <label>,<count>,<count>,...
// CSV fields are quoted per RFC 4180 (in double quotes, inner quotes doubled)
// when they contain a comma, a double quote, CR or LF; lines end with "\n".
// Doubles are written in shortest round-trip form ("0.5", "0.6666666666666666").
#pragma once

#include <filesystem>
#include <string>

#include "trainer/evaluation/evaluation_report.h"

namespace xfer::trainer::evaluation {

// The three files above in `dir`, which is created (with parents) if missing.
// Each file is written atomically: a temporary file in `dir` is written,
// fsynced and renamed over the target (and `dir` is fsynced), so a crash
// leaves either the old file or the new one, never a torn one. Files already
// replaced stay replaced if a later one fails. Throws std::runtime_error
// naming the file (or directory) and the errno text on any I/O failure, and
// std::invalid_argument if `report` is invalid (see validate_report) or `dir`
// is empty (use "." for the working directory).
void write_report_files(const EvaluationReport& report, const std::filesystem::path& dir);

// The CSV texts written above, for callers that ship them elsewhere.
std::string classes_csv(const EvaluationReport& report);
std::string confusion_csv(const EvaluationReport& report);

}  // namespace xfer::trainer::evaluation
