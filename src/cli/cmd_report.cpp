// whale report RUN: a training run's metrics.jsonl as RUN/report.html (train/report.h).
#include <cstdio>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "core/error.h"
#include "train/report.h"

namespace whale {
void register_report(CLI::App& app) {
  auto report_dir = std::make_shared<std::string>();
  auto* rep = app.add_subcommand("report", "Render a training run's metrics.jsonl as RUN/report.html (SVG curves)");
  rep->add_option("run", *report_dir, "Run directory (of whale train or whale grpo)")->required();
  rep->callback([report_dir] {
    const train::ReportSummary r = train::write_report(*report_dir);
    std::printf("wrote %s (%zu charts, %lld steps)\n", r.path.c_str(), r.charts, (long long)r.steps);
  });
}

}  // namespace whale
