#include "train/report.h"

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/error.h"

namespace whale::train {
namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

namespace {

std::string html_escape(const std::string& s) {
  std::string o;
  for (char c : s) o += c == '<' ? "&lt;" : c == '>' ? "&gt;" : c == '&' ? "&amp;" : c == '\'' ? "&#39;" : std::string(1, c);
  return o;
}

std::string svg_chart(const std::string& name, const std::vector<std::pair<double, double>>& pts) {
  const double W = 460, H = 180, L = 56, R = 10, T = 22, B = 26;
  double x0 = pts.front().first, x1 = pts.back().first, y0 = pts.front().second, y1 = y0;
  for (auto [x, y] : pts) y0 = std::min(y0, y), y1 = std::max(y1, y);
  if (x1 == x0) x1 = x0 + 1;
  if (y1 == y0) y1 = y0 + 1;
  auto px = [&](double x) { return L + (x - x0) / (x1 - x0) * (W - L - R); };
  auto py = [&](double y) { return H - B - (y - y0) / (y1 - y0) * (H - T - B); };
  char buf[256];
  std::string s = "<svg xmlns='http://www.w3.org/2000/svg' width='460' height='180'>";
  s += "<text x='56' y='14' font-size='13' font-family='sans-serif'>" + html_escape(name) + "</text>";
  s += "<rect x='56' y='22' width='394' height='132' fill='none' stroke='#ccc'/>";
  std::snprintf(buf, sizeof buf,
                "<text x='52' y='26' font-size='10' text-anchor='end'>%.4g</text><text x='52' y='154' font-size='10' "
                "text-anchor='end'>%.4g</text><text x='56' y='170' font-size='10'>%.0f</text><text x='450' y='170' "
                "font-size='10' text-anchor='end'>%.0f</text>",
                y1, y0, x0, x1);
  s += buf;
  s += "<polyline fill='none' stroke='#1f77b4' stroke-width='1.5' points='";
  for (auto [x, y] : pts) {
    std::snprintf(buf, sizeof buf, "%.1f,%.1f ", px(x), py(y));
    s += buf;
  }
  return s + "'/></svg>";
}

}  // namespace

ReportSummary write_report(const std::string& run) {
  const fs::path path = fs::path(run) / "metrics.jsonl";
  std::ifstream in(path);
  if (!in) fail(path.string(), ": cannot open (is ", run, " a training run directory?)");
  std::map<std::string, std::vector<std::pair<double, double>>> series;
  std::vector<std::string> order;
  std::string line;
  int64_t n = 0;
  while (std::getline(in, line)) {
    auto j = json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("step") || !j["step"].is_number()) continue;
    ++n;
    for (auto it = j.begin(); it != j.end(); ++it) {
      if (it.key() == "step" || !it.value().is_number()) continue;
      if (!series.count(it.key())) order.push_back(it.key());
      series[it.key()].emplace_back(j["step"].get<double>(), it.value().get<double>());
    }
  }
  if (n == 0) fail(path.string(), ": no metrics yet");
  std::string html = "<!doctype html><meta charset='utf-8'><title>whale run " + html_escape(run) +
                     "</title><body style='font-family:sans-serif'><h2>" + html_escape(run) + "</h2><p>" + std::to_string(n) +
                     " logged steps</p>";
  for (const std::string& k : order) html += svg_chart(k, series[k]) + "\n";
  html += "</body>\n";
  const fs::path out = fs::path(run) / "report.html";
  std::ofstream f(out, std::ios::trunc);
  f << html;
  if (!f) fail(out.string(), ": write failed");
  return {out.string(), order.size(), n};
}

}  // namespace whale::train
