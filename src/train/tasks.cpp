// Verifiable reasoning tasks. Traces are written the way a small model can learn them: one
// elementary operation per line, digits worked right to left for column addition, partial
// products for multiplication, the intermediate results of a Countdown solution.
#include "train/tasks.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <random>

#include "core/error.h"

namespace whale::train {
namespace {

uint64_t mix(uint64_t x) {  // splitmix64 finaliser
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

uint64_t hash_string(const std::string& s) {  // FNV-1a, then mixed
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return mix(h);
}

Split split_of(const std::string& question) { return hash_string(question) % 10 == 0 ? Split::Test : Split::Train; }

struct Rng {
  std::mt19937_64 g;
  explicit Rng(uint64_t seed) : g(seed) {}
  int64_t uniform(int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(g); }
  int64_t digits(int n) {  // a number with exactly n digits
    int64_t lo = 1;
    for (int i = 1; i < n; ++i) lo *= 10;
    return uniform(n == 1 ? 0 : lo, lo * 10 - 1);
  }
};

std::string str(int64_t v) { return std::to_string(v); }

// Column addition with its state written out on every line, so each step only looks at the
// line before it: the numbers still to add (last digits dropped as they are used, an
// exhausted number becomes 0), the carry, and the digits of the result so far.
//   347 + 285, carry 0: 7 + 5 + 0 = 12, digit 2, carry 1, so far 2
//   34 + 28, carry 1: 4 + 8 + 1 = 13, digit 3, carry 1, so far 32
//   3 + 2, carry 1: 3 + 2 + 1 = 6, digit 6, carry 0, so far 632
std::string addition_trace(int64_t a, int64_t b) {
  std::string t, so_far;
  int64_t carry = 0;
  while (a > 0 || b > 0 || carry > 0) {
    const int64_t da = a % 10, db = b % 10, sum = da + db + carry;
    so_far.insert(so_far.begin(), char('0' + sum % 10));
    t += str(a) + " + " + str(b) + ", carry " + str(carry) + ": " + str(da) + " + " + str(db) + " + " + str(carry) +
         " = " + str(sum) + ", digit " + str(sum % 10) + ", carry " + str(sum / 10) + ", so far " + so_far + "\n";
    a /= 10;
    b /= 10;
    carry = sum / 10;
  }
  return t;
}

Problem addition(Rng& r) {
  int64_t a = r.digits(static_cast<int>(r.uniform(1, 4))), b = r.digits(static_cast<int>(r.uniform(1, 4)));
  Problem p{Task::Addition, "What is " + str(a) + " + " + str(b) + "?", "", "", {}, 0};
  p.trace = (a == 0 && b == 0 ? "0 + 0 = 0\n" : addition_trace(a, b)) + "so " + str(a) + " + " + str(b) + " = " + str(a + b);
  p.answer = str(a + b);
  return p;
}

// Long multiplication: a by each digit of b with the same stateful lines (the part of a not
// yet used, the carry, the digits so far), each partial product shifted by its place, then
// the partial products added column by column.
//   47 * 6, carry 0: 7 * 6 + 0 = 42, digit 2, carry 4, so far 2
Problem multiplication(Rng& r) {
  int64_t a = r.digits(static_cast<int>(r.uniform(2, 3))), b = r.digits(static_cast<int>(r.uniform(1, 2)));
  if (b < 2) b += 2;  // no trivial products by 0 or 1
  Problem p{Task::Multiplication, "What is " + str(a) + " * " + str(b) + "?", "", "", {}, 0};
  std::vector<int64_t> parts;
  int64_t place = 1;
  for (int64_t rest_b = b; rest_b > 0; rest_b /= 10, place *= 10) {
    const int64_t d = rest_b % 10;
    if (d == 0) continue;
    std::string so_far;
    int64_t carry = 0;
    for (int64_t x = a; x > 0 || carry > 0; x /= 10) {
      const int64_t v = (x % 10) * d + carry;
      const std::string digits = x >= 10 ? std::string(1, char('0' + v % 10)) : str(v);  // the last step writes all
      so_far.insert(0, digits);
      p.trace += str(x) + " * " + str(d) + ", carry " + str(carry) + ": " + str(x % 10) + " * " + str(d) + " + " +
                 str(carry) + " = " + str(v) + ", digit" + (x >= 10 ? " " : "s ") + digits + ", carry " +
                 str(x >= 10 ? v / 10 : 0) + ", so far " + so_far + "\n";
      carry = x >= 10 ? v / 10 : 0;
      if (x < 10) break;
    }
    p.trace += str(a) + " * " + str(d * place) + " = " + str(a * d * place) + "\n";
    parts.push_back(a * d * place);
  }
  if (parts.size() > 1) p.trace += addition_trace(parts[0], parts[1]);
  p.trace += "so " + str(a) + " * " + str(b) + " = " + str(a * b);
  p.answer = str(a * b);
  return p;
}

// Countdown: combine 3 or 4 numbers step by step; the target is where the steps land.
Problem countdown(Rng& r) {
  for (;;) {
    int n = static_cast<int>(r.uniform(3, 4));
    std::vector<int64_t> nums;
    for (int i = 0; i < n; ++i) nums.push_back(r.uniform(1, i == 0 ? 25 : 12));
    // Values still in play with their expression text; combine two at a time.
    std::vector<std::pair<int64_t, std::string>> pool;
    for (int64_t v : nums) pool.emplace_back(v, str(v));
    std::string trace;
    while (pool.size() > 1) {
      size_t i = static_cast<size_t>(r.uniform(0, static_cast<int64_t>(pool.size()) - 1));
      size_t j = static_cast<size_t>(r.uniform(0, static_cast<int64_t>(pool.size()) - 2));
      if (j >= i) ++j;
      auto [x, ex] = pool[i];
      auto [y, ey] = pool[j];
      if (x < y) {
        std::swap(x, y);
        std::swap(ex, ey);
      }
      int op = static_cast<int>(r.uniform(0, 3));
      int64_t v = 0;
      char c = '+';
      if (op == 0) v = x + y, c = '+';
      else if (op == 1 && x != y) v = x - y, c = '-';
      else if (op == 2 && x * y <= 500) v = x * y, c = '*';
      else if (op == 3 && y > 1 && x % y == 0) v = x / y, c = '/';
      else v = x + y, c = '+';
      trace += str(x) + " " + c + " " + str(y) + " = " + str(v) + "\n";
      std::string e = "(" + ex + " " + c + " " + ey + ")";
      pool.erase(pool.begin() + static_cast<long>(std::max(i, j)));
      pool.erase(pool.begin() + static_cast<long>(std::min(i, j)));
      pool.emplace_back(v, e);
    }
    int64_t target = pool[0].first;
    if (target < 10 || target > 999) continue;
    std::string expr = pool[0].second.substr(1, pool[0].second.size() - 2);  // drop the outer parentheses
    std::string list;
    for (size_t i = 0; i < nums.size(); ++i) list += (i ? ", " : "") + str(nums[i]);
    Problem p{Task::Countdown, "Using the numbers " + list + ", make " + str(target) + ".", "", "", nums, target};
    p.trace = trace + "so " + expr + " = " + str(target);
    p.answer = expr + " = " + str(target);
    return p;
  }
}

// Short word problems and linear equations: two or three operations each.
Problem algebra(Rng& r) {
  static const char* names[] = {"Ana", "Ben", "Chen", "Dara", "Eli", "Fatima", "Gus", "Hana"};
  static const char* items[] = {"apples", "books", "coins", "pens", "stamps", "cards"};
  std::string name = names[r.uniform(0, 7)], item = items[r.uniform(0, 5)];
  Problem p{Task::Algebra, "", "", "", {}, 0};
  int64_t result = 0;
  switch (r.uniform(0, 2)) {
    case 0: {  // boxes of k, gives some away
      int64_t boxes = r.uniform(2, 9), each = r.uniform(3, 15), away = r.uniform(1, boxes * each - 1);
      p.question = name + " has " + str(boxes) + " boxes of " + str(each) + " " + item + " and gives away " +
                   str(away) + ". How many " + item + " are left?";
      p.trace = str(boxes) + " * " + str(each) + " = " + str(boxes * each) + "\n" + str(boxes * each) + " - " +
                str(away) + " = " + str(boxes * each - away) + "\n";
      result = boxes * each - away;
      break;
    }
    case 1: {  // a x + b = c
      int64_t a = r.uniform(2, 9), x = r.uniform(1, 20), b = r.uniform(1, 30);
      p.question = "Solve for x: " + str(a) + "x + " + str(b) + " = " + str(a * x + b) + ".";
      p.trace = str(a) + "x = " + str(a * x + b) + " - " + str(b) + " = " + str(a * x) + "\nx = " + str(a * x) +
                " / " + str(a) + " = " + str(x) + "\n";
      result = x;
      break;
    }
    default: {  // buys at a price, pays with a note
      int64_t n = r.uniform(2, 9), price = r.uniform(2, 12), paid = (n * price / 10 + 1) * 10;
      p.question = name + " buys " + str(n) + " " + item + " at " + str(price) + " dollars each and pays with " +
                   str(paid) + " dollars. How much change does " + name + " get?";
      p.trace = str(n) + " * " + str(price) + " = " + str(n * price) + "\n" + str(paid) + " - " + str(n * price) +
                " = " + str(paid - n * price) + "\n";
      result = paid - n * price;
      break;
    }
  }
  p.trace += "so the answer is " + str(result);
  p.answer = str(result);
  return p;
}

// Countdown expression parser: expr := term (('+'|'-') term)*, term := factor (('*'|'/') factor)*,
// factor := number | '(' expr ')'. Numbers are checked off against the offered ones.
struct ExprParser {
  const std::string& s;
  size_t i = 0;
  std::vector<int64_t> left;
  int depth = 0;
  bool ok = true;

  void skip() {
    while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
  }
  int64_t factor() {
    skip();
    if (!ok || i >= s.size()) return ok = false, 0;
    if (s[i] == '(') {
      if (++depth > 64) return ok = false, 0;
      ++i;
      int64_t v = expr();
      skip();
      if (i >= s.size() || s[i] != ')') return ok = false, 0;
      ++i;
      --depth;
      return v;
    }
    if (!std::isdigit(static_cast<unsigned char>(s[i]))) return ok = false, 0;
    int64_t v = 0;
    size_t digits = 0;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) {
      if (++digits > 12) return ok = false, 0;
      v = v * 10 + (s[i++] - '0');
    }
    auto it = std::find(left.begin(), left.end(), v);
    if (it == left.end()) return ok = false, 0;
    left.erase(it);
    return v;
  }
  int64_t term() {
    int64_t v = factor();
    for (;;) {
      skip();
      if (!ok || i >= s.size() || (s[i] != '*' && s[i] != '/')) return v;
      char op = s[i++];
      int64_t w = factor();
      if (!ok) return 0;
      if (op == '*') {
        if (__builtin_mul_overflow(v, w, &v)) return ok = false, 0;
      } else {
        if (w == 0 || v % w != 0) return ok = false, 0;
        v /= w;
      }
    }
  }
  int64_t expr() {
    int64_t v = term();
    for (;;) {
      skip();
      if (!ok || i >= s.size() || (s[i] != '+' && s[i] != '-')) return v;
      char op = s[i++];
      int64_t w = term();
      if (!ok) return 0;
      if (op == '+' ? __builtin_add_overflow(v, w, &v) : __builtin_sub_overflow(v, w, &v)) return ok = false, 0;
    }
  }
};

}  // namespace

const char* task_name(Task t) {
  switch (t) {
    case Task::Addition: return "addition";
    case Task::Multiplication: return "multiplication";
    case Task::Countdown: return "countdown";
    case Task::Algebra: return "algebra";
  }
  return "?";
}

Task parse_task(const std::string& name) {
  for (Task t : all_tasks())
    if (name == task_name(t)) return t;
  throw Error("unknown task \"" + name + "\" (addition, multiplication, countdown, algebra)");
}

std::vector<Task> parse_task_list(const std::string& list) {
  if (list == "all") return all_tasks();
  std::vector<Task> tasks;
  size_t start = 0;
  while (start <= list.size()) {
    size_t end = list.find(',', start);
    if (end == std::string::npos) end = list.size();
    if (end > start) tasks.push_back(parse_task(list.substr(start, end - start)));
    start = end + 1;
  }
  if (tasks.empty()) fail("--tasks: name at least one task");
  return tasks;
}

std::vector<Task> all_tasks() { return {Task::Addition, Task::Multiplication, Task::Countdown, Task::Algebra}; }

Problem make_problem(Task task, Split split, uint64_t seed, int64_t index) {
  // Candidates from a stream keyed by (task, seed, index, attempt); the first one of the
  // requested split is the problem. About one in ten questions is a test question.
  for (uint64_t attempt = 0;; ++attempt) {
    Rng r(mix(mix(mix(seed) ^ (static_cast<uint64_t>(task) + 1) * 0x51ed27) ^ static_cast<uint64_t>(index)) +
          attempt * 0x9e3779b97f4a7c15ull);
    Problem p;
    switch (task) {
      case Task::Addition: p = addition(r); break;
      case Task::Multiplication: p = multiplication(r); break;
      case Task::Countdown: p = countdown(r); break;
      case Task::Algebra: p = algebra(r); break;
    }
    if (split_of(p.question) == split) return p;
  }
}

bool eval_countdown(const std::string& expr, const std::vector<int64_t>& numbers, int64_t& value) {
  ExprParser parser{expr, 0, numbers};
  int64_t v = parser.expr();
  parser.skip();
  if (!parser.ok || parser.i != expr.size()) return false;
  value = v;
  return true;
}

bool check_answer(const Problem& p, const std::string& reply) {
  if (p.task == Task::Countdown) {
    // The expression: on the last line, before any '=', the longest run of expression
    // characters ending there ("so (3 + 4) * 5 = 35" -> "(3 + 4) * 5").
    std::string line = reply;
    while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back()))) line.pop_back();
    size_t nl = line.rfind('\n');
    if (nl != std::string::npos) line = line.substr(nl + 1);
    size_t eq = line.find('=');
    if (eq != std::string::npos) line = line.substr(0, eq);
    size_t start = line.size();
    while (start > 0 && std::strchr("0123456789+-*/() \t", line[start - 1]) != nullptr) --start;
    line = line.substr(start);
    while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back()))) line.pop_back();
    start = line.find_first_not_of(" \t");
    if (start == std::string::npos) return false;
    int64_t v = 0;
    return eval_countdown(line.substr(start), p.numbers, v) && v == p.target;
  }
  // The last integer in the reply (an optional minus sign directly before it).
  size_t end = reply.size();
  while (end > 0 && !std::isdigit(static_cast<unsigned char>(reply[end - 1]))) --end;
  if (end == 0) return false;
  size_t begin = end;
  while (begin > 0 && std::isdigit(static_cast<unsigned char>(reply[begin - 1]))) --begin;
  if (end - begin > 18) return false;
  std::string num = reply.substr(begin, end - begin);
  if (begin > 0 && reply[begin - 1] == '-') num = "-" + num;
  return num == p.answer;
}

}  // namespace whale::train
