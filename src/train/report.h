// RUN/report.html: one SVG line chart per numeric metric of RUN/metrics.jsonl (training or
// GRPO), x = step. Self-contained (no scripts, no external files).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace whale::train {

struct ReportSummary {
  std::string path;  // the report written
  size_t charts = 0;
  int64_t steps = 0;  // logged steps
};

// Throws Error naming the file when RUN has no metrics.
ReportSummary write_report(const std::string& run);

}  // namespace whale::train
