// EvaluationReport <-> xfer.v1.RunReport, the form the coordinator stores.
#pragma once

#include <string>

#include "trainer/evaluation/evaluation_report.h"
#include "xfer/v1/coordinator.pb.h"

namespace xfer::trainer::evaluation {

// The report as the coordinator stores it for `run`; created_unix_ms is left
// 0 (the server sets it). Throws std::invalid_argument if `report` is invalid
// (see validate_report).
v1::RunReport to_proto(const EvaluationReport& report, const std::string& run);

// The report back. Throws std::invalid_argument naming the field when the
// message is inconsistent: num_classes outside [1, kMaxClasses], classes or
// confusion of the wrong size, classes not in index order, negative counts,
// or samples / supports that disagree with the confusion matrix. Empty class
// labels become class_<i>. absent_classes, which the proto does not carry,
// is recomputed from the confusion matrix; the macros are taken as stored.
// `run` and `created_unix_ms` are not part of an EvaluationReport and are
// dropped.
EvaluationReport from_proto(const v1::RunReport& report);

}  // namespace xfer::trainer::evaluation
