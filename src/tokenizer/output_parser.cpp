#include "tokenizer/output_parser.h"

#include <algorithm>
#include <array>
#include <nlohmann/json.hpp>

namespace whale {

namespace {
constexpr std::string_view kThinkOpen = "<think>";
constexpr std::string_view kThinkClose = "</think>";
constexpr std::string_view kCallsBegin = "<｜tool▁calls▁begin｜>";
constexpr std::string_view kCallsEnd = "<｜tool▁calls▁end｜>";
constexpr std::string_view kCallBegin = "<｜tool▁call▁begin｜>";
constexpr std::string_view kCallEnd = "<｜tool▁call▁end｜>";
constexpr std::string_view kSep = "<｜tool▁sep｜>";
constexpr std::string_view kFenceOpen = "```json\n";

// Length of the longest suffix of `s` that is a proper prefix of `marker`: the bytes that
// must wait because the marker may be completing.
size_t partial_suffix(std::string_view s, std::string_view marker) {
  for (size_t n = std::min(s.size(), marker.size() - 1); n > 0; --n)
    if (s.substr(s.size() - n) == marker.substr(0, n)) return n;
  return 0;
}

// DSML tags, with the tokenizer's fullwidth bars or ASCII ones.
constexpr std::array<std::string_view, 2> kBars = {"｜DSML｜", "|DSML|"};
std::vector<std::string> dsml_tags(std::string_view open, std::initializer_list<std::string_view> names) {
  std::vector<std::string> out;
  for (std::string_view bar : kBars)
    for (std::string_view name : names) out.push_back(std::string(open) + std::string(bar) + std::string(name));
  return out;
}
const std::vector<std::string> kBlockOpen = dsml_tags("<", {"function_calls>", "tool_calls>"});
const std::vector<std::string> kBlockClose = dsml_tags("</", {"function_calls>", "tool_calls>"});
const std::vector<std::string> kInvokeOpen = dsml_tags("<", {"invoke name=\""});
const std::vector<std::string> kInvokeClose = dsml_tags("</", {"invoke>"});
const std::vector<std::string> kParamOpen = dsml_tags("<", {"parameter name=\""});
const std::vector<std::string> kParamClose = dsml_tags("</", {"parameter>"});

// The earliest occurrence of any marker: (position, length), or npos.
std::pair<size_t, size_t> find_any(std::string_view s, const std::vector<std::string>& markers) {
  std::pair<size_t, size_t> best{std::string_view::npos, 0};
  for (const std::string& m : markers)
    if (size_t p = s.find(m); p < best.first) best = {p, m.size()};
  return best;
}
size_t partial_any(std::string_view s, const std::vector<std::string>& markers) {
  size_t n = 0;
  for (const std::string& m : markers) n = std::max(n, partial_suffix(s, m));
  return n;
}
// Length of the marker `s` starts with, 0 if none; `maybe`: s is a proper prefix of one.
size_t starts_with_any(std::string_view s, const std::vector<std::string>& markers, bool& maybe) {
  for (const std::string& m : markers) {
    if (s.substr(0, m.size()) == m) return m.size();
    if (s.size() < m.size() && m.substr(0, s.size()) == s) maybe = true;
  }
  return 0;
}
size_t skip_space(std::string_view s) {
  size_t i = 0;
  while (i < s.size() && (s[i] == '\n' || s[i] == ' ' || s[i] == '\r' || s[i] == '\t')) ++i;
  return i;
}
// A parameter's value as JSON: string="true" quotes it; otherwise the model's JSON, or the text
// quoted when it is not JSON (a client's json.loads(arguments) must never fail).
std::string dsml_value(std::string_view v, bool is_string) {
  using json = nlohmann::json;
  if (!is_string) {
    const std::string_view t = v.substr(skip_space(v));
    std::string_view u = t;
    while (!u.empty() && std::string_view("\n\r \t").find(u.back()) != std::string_view::npos) u.remove_suffix(1);
    if (!u.empty() && json::accept(u)) return std::string(u);
  }
  return json(std::string(v)).dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace

bool ParsedOutput::operator==(const ParsedOutput& o) const {
  if (reasoning != o.reasoning || content != o.content || tool_calls.size() != o.tool_calls.size()) return false;
  for (size_t i = 0; i < tool_calls.size(); ++i)
    if (tool_calls[i].name != o.tool_calls[i].name || tool_calls[i].arguments != o.tool_calls[i].arguments) return false;
  return true;
}

OutputParser::OutputParser(bool starts_in_reasoning, ToolCallSyntax syntax)
    : state_(starts_in_reasoning ? State::Reasoning : State::Start), syntax_(syntax) {}

void OutputParser::emit(ParseEvent::Kind kind, std::string_view text, std::vector<ParseEvent>& out) {
  if (text.empty() && kind != ParseEvent::ToolCallStart) return;
  const int index = int(result_.tool_calls.size()) - 1;
  switch (kind) {
    case ParseEvent::Reasoning: result_.reasoning += text; break;
    case ParseEvent::Content: result_.content += text; break;
    case ParseEvent::ToolCallStart: result_.tool_calls.push_back({std::string(text), ""}); break;
    case ParseEvent::ToolCallArguments: result_.tool_calls.back().arguments += text; break;
  }
  // Merge with the previous event of the same kind, so deltas stay few.
  if (!out.empty() && out.back().kind == kind && kind != ParseEvent::ToolCallStart) out.back().text += text;
  else out.push_back({kind, std::string(text), kind == ParseEvent::ToolCallStart ? int(result_.tool_calls.size()) - 1 : index});
}

std::vector<ParseEvent> OutputParser::push(std::string_view text) {
  buf_ += text;
  std::vector<ParseEvent> out;
  step(false, out);
  return out;
}

std::vector<ParseEvent> OutputParser::finish() {
  std::vector<ParseEvent> out;
  step(true, out);
  return out;
}

// Consumes buf_ as far as it can be decided. With `final`, nothing more will arrive, so
// held-back text is released as whatever it is.
void OutputParser::step(bool final, std::vector<ParseEvent>& out) {
  for (;;) {
    if (syntax_ == ToolCallSyntax::Dsml &&
        (state_ == State::Content || state_ == State::DsmlBlock || state_ == State::DsmlInvoke || state_ == State::DsmlParam)) {
      if (!step_dsml(final, out)) return;
      continue;
    }
    std::string_view b = buf_;
    switch (state_) {
      case State::Start: {  // a think block may open at the very beginning
        if (b.size() < kThinkOpen.size() && kThinkOpen.substr(0, b.size()) == b && !final) return;
        if (b.substr(0, kThinkOpen.size()) == kThinkOpen) {
          buf_.erase(0, kThinkOpen.size());
          state_ = State::Reasoning;
        } else {
          state_ = State::Content;
        }
        continue;
      }
      case State::Reasoning: {
        size_t p = b.find(kThinkClose);
        if (p == std::string_view::npos) {
          const size_t keep = final ? 0 : partial_suffix(b, kThinkClose);
          emit(ParseEvent::Reasoning, b.substr(0, b.size() - keep), out);
          buf_.erase(0, b.size() - keep);
          return;
        }
        emit(ParseEvent::Reasoning, b.substr(0, p), out);
        buf_.erase(0, p + kThinkClose.size());
        state_ = State::Content;
        reasoned_ = true;
        continue;
      }
      case State::Content: {
        size_t p = b.find(kCallsBegin);
        // A `</think>` after the reasoning ended is markup, not answer: a model whose reasoning
        // was cut short by a thinking budget often goes on reasoning and closes it again.
        if (const size_t q = reasoned_ ? b.find(kThinkClose) : std::string_view::npos; q != std::string_view::npos && q < p) {
          emit(ParseEvent::Content, b.substr(0, q), out);
          buf_.erase(0, q + kThinkClose.size());
          continue;
        }
        if (p == std::string_view::npos) {
          const size_t keep = final ? 0 : std::max(partial_suffix(b, kCallsBegin), reasoned_ ? partial_suffix(b, kThinkClose) : 0);
          emit(ParseEvent::Content, b.substr(0, b.size() - keep), out);
          buf_.erase(0, b.size() - keep);
          return;
        }
        emit(ParseEvent::Content, b.substr(0, p), out);
        buf_.erase(0, p + kCallsBegin.size());
        state_ = State::ToolCalls;
        continue;
      }
      case State::ToolCalls: {  // between calls: whitespace, then a call or the end
        size_t i = 0;
        while (i < b.size() && (b[i] == '\n' || b[i] == ' ' || b[i] == '\r' || b[i] == '\t')) ++i;
        std::string_view rest = b.substr(i);
        if (rest.substr(0, kCallBegin.size()) == kCallBegin) {
          buf_.erase(0, i + kCallBegin.size());
          state_ = State::ToolName;
          continue;
        }
        if (rest.substr(0, kCallsEnd.size()) == kCallsEnd) {
          buf_.erase(0, i + kCallsEnd.size());
          state_ = State::Content;  // text after the calls (rare) is content again
          continue;
        }
        const bool maybe = kCallBegin.substr(0, std::min(rest.size(), kCallBegin.size())) == rest ||
                           kCallsEnd.substr(0, std::min(rest.size(), kCallsEnd.size())) == rest;
        if (maybe && !final) return;
        // Malformed: keep the text as content rather than lose it.
        state_ = State::Content;
        continue;
      }
      case State::ToolName: {
        // V3.1: NAME<｜tool▁sep｜>; V3: TYPE<｜tool▁sep｜>NAME\n```json\n
        if (syntax_ == ToolCallSyntax::V31) {
          size_t p = b.find(kSep);
          if (p == std::string_view::npos) {
            if (final) {
              emit(ParseEvent::ToolCallStart, b, out);
              buf_.clear();
              state_ = State::Done;
            }
            return;
          }
          emit(ParseEvent::ToolCallStart, b.substr(0, p), out);
          buf_.erase(0, p + kSep.size());
          state_ = State::ToolArgs;
          continue;
        }
        size_t p = b.find(kSep);
        if (p == std::string_view::npos) {
          if (final) {
            buf_.clear();
            state_ = State::Done;
          }
          return;
        }
        size_t nl = b.find('\n', p + kSep.size());
        if (nl == std::string_view::npos) {
          if (final) {
            emit(ParseEvent::ToolCallStart, b.substr(p + kSep.size()), out);
            buf_.clear();
            state_ = State::Done;
          }
          return;
        }
        emit(ParseEvent::ToolCallStart, b.substr(p + kSep.size(), nl - p - kSep.size()), out);
        buf_.erase(0, nl + 1);
        state_ = State::ToolArgsOpen;
        continue;
      }
      case State::ToolArgsOpen: {  // V3: the ```json fence before the arguments
        if (b.size() < kFenceOpen.size() && kFenceOpen.substr(0, b.size()) == b && !final) return;
        if (b.substr(0, kFenceOpen.size()) == kFenceOpen) buf_.erase(0, kFenceOpen.size());
        state_ = State::ToolArgs;
        continue;
      }
      case State::ToolArgs: {
        const size_t p = b.find(kCallEnd);
        std::string_view args = p == std::string_view::npos ? b : b.substr(0, p);
        size_t keep = (p == std::string_view::npos && !final) ? partial_suffix(b, kCallEnd) : 0;
        if (syntax_ == ToolCallSyntax::V3) {
          // The closing fence ("\n```") is not part of the arguments. A tail of fence
          // characters is held back until it is known whether more JSON follows it, and
          // dropped once the call ends.
          size_t tail = 0;
          const std::string_view body = args.substr(0, args.size() - keep);
          while (tail < body.size() && std::string_view("\n\r \t`").find(body[body.size() - 1 - tail]) != std::string_view::npos)
            ++tail;
          if (p == std::string_view::npos && !final) keep += tail;
          else args = args.substr(0, args.size() - tail);
        }
        if (p == std::string_view::npos) {
          emit(ParseEvent::ToolCallArguments, args.substr(0, args.size() - keep), out);
          buf_.erase(0, b.size() - keep);
          if (final) buf_.clear();
          return;
        }
        emit(ParseEvent::ToolCallArguments, args, out);
        buf_.erase(0, p + kCallEnd.size());
        state_ = State::ToolCalls;
        continue;
      }
      case State::Done:
        emit(ParseEvent::Content, b, out);
        buf_.clear();
        return;
      case State::DsmlBlock: case State::DsmlInvoke: case State::DsmlParam:
        return;  // handled by step_dsml
    }
  }
}

bool OutputParser::step_dsml(bool final, std::vector<ParseEvent>& out) {
  const std::string_view b = buf_;
  switch (state_) {
    case State::Content: {
      const auto [p, len] = find_any(b, kBlockOpen);
      if (const size_t q = reasoned_ ? b.find(kThinkClose) : std::string_view::npos; q != std::string_view::npos && q < p) {
        emit(ParseEvent::Content, b.substr(0, q), out);  // a stray `</think>` (see step())
        buf_.erase(0, q + kThinkClose.size());
        return true;
      }
      if (p == std::string_view::npos) {
        // Hold back what may start a block, and the newlines before it ("\n\n<｜DSML｜...").
        size_t keep = final ? 0 : std::max(partial_any(b, kBlockOpen), reasoned_ ? partial_suffix(b, kThinkClose) : 0);
        if (!final)
          while (keep < b.size() && b[b.size() - keep - 1] == '\n') ++keep;
        emit(ParseEvent::Content, b.substr(0, b.size() - keep), out);
        buf_.erase(0, b.size() - keep);
        return false;
      }
      size_t end = p;
      while (end > 0 && b[end - 1] == '\n') --end;  // the block's leading newlines are markup
      emit(ParseEvent::Content, b.substr(0, end), out);
      buf_.erase(0, p + len);
      state_ = State::DsmlBlock;
      return true;
    }
    case State::DsmlBlock: {  // between invokes
      const size_t i = skip_space(b);
      const std::string_view rest = b.substr(i);
      bool maybe = false;
      if (size_t n = starts_with_any(rest, kInvokeOpen, maybe)) {
        const size_t q = rest.find('"', n);
        const size_t gt = q == std::string_view::npos ? std::string_view::npos : rest.find('>', q);
        if (gt == std::string_view::npos) {
          if (!final) return false;
          buf_.clear();  // the name was cut off by the end of generation: no call rather than a wrong name
          state_ = State::Content;
          return false;
        }
        const std::string_view name = rest.substr(n, q - n);
        emit(ParseEvent::ToolCallStart, name, out);
        emit(ParseEvent::ToolCallArguments, "{", out);
        first_param_ = true;
        buf_.erase(0, i + gt + 1);
        state_ = State::DsmlInvoke;
        return true;
      }
      if (size_t n = starts_with_any(rest, kBlockClose, maybe)) {
        buf_.erase(0, i + n);
        state_ = State::Content;  // text after the block (there should be none) is content again
        return true;
      }
      if (final && rest.empty()) {
        buf_.clear();
        state_ = State::Content;
        return false;
      }
      if ((maybe || rest.empty()) && !final) return false;
      // Not a tag: dropped up to the next one (markup never becomes content).
      const size_t lt = rest.find('<', 1);
      buf_.erase(0, lt == std::string_view::npos ? b.size() : i + lt);
      return true;
    }
    case State::DsmlInvoke: {  // between parameters
      const size_t i = skip_space(b);
      const std::string_view rest = b.substr(i);
      bool maybe = false;
      if (size_t n = starts_with_any(rest, kParamOpen, maybe)) {
        const size_t gt = rest.find('>', n);
        if (gt == std::string_view::npos && !final) return false;
        const std::string_view attrs = rest.substr(n, gt == std::string_view::npos ? std::string_view::npos : gt - n);
        const size_t q = attrs.find('"');
        param_name_ = std::string(attrs.substr(0, q));
        param_string_ = attrs.find("string=\"true\"") != std::string_view::npos;
        buf_.erase(0, gt == std::string_view::npos ? b.size() : i + gt + 1);
        state_ = State::DsmlParam;
        return true;
      }
      const size_t close = starts_with_any(rest, kInvokeClose, maybe);
      if (close || (final && (rest.empty() || !maybe))) {  // the end, or cut off: the object closes
        emit(ParseEvent::ToolCallArguments, "}", out);
        buf_.erase(0, close ? i + close : b.size());
        state_ = State::DsmlBlock;
        return true;
      }
      if (maybe || rest.empty()) {
        if (final) {  // a tag cut off by the end of generation
          emit(ParseEvent::ToolCallArguments, "}", out);
          buf_.clear();
          state_ = State::DsmlBlock;
          return true;
        }
        return false;
      }
      const size_t lt = rest.find('<', 1);
      buf_.erase(0, lt == std::string_view::npos ? b.size() : i + lt);
      return true;
    }
    case State::DsmlParam: {
      const auto [p, len] = find_any(b, kParamClose);
      if (p == std::string_view::npos && !final) return false;
      std::string_view value = p == std::string_view::npos ? b : b.substr(0, p);
      if (p == std::string_view::npos)  // cut off: a closing tag begun at the end is markup, not value
        for (const std::string& close : kParamClose)
          for (size_t k = std::min(close.size() - 1, value.size()); k > 0; --k)
            if (value.substr(value.size() - k) == std::string_view(close).substr(0, k)) {
              value.remove_suffix(k);
              break;
            }
      std::string text = first_param_ ? "" : ", ";
      text += nlohmann::json(param_name_).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + ": " +
              dsml_value(value, param_string_);
      emit(ParseEvent::ToolCallArguments, text, out);
      first_param_ = false;
      buf_.erase(0, p == std::string_view::npos ? b.size() : p + len);
      state_ = State::DsmlInvoke;
      return true;
    }
    default:
      return false;
  }
}

ParsedOutput OutputParser::parse(std::string_view text, bool starts_in_reasoning, ToolCallSyntax syntax) {
  OutputParser p(starts_in_reasoning, syntax);
  p.push(text);
  p.finish();
  return p.result();
}

}  // namespace whale
