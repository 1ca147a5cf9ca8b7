// Verifiable reasoning tasks for training small models to think step by step: each problem
// has a question, a step-by-step reasoning trace, the answer, and a checker for any answer a
// model writes. Generation is deterministic in (task, seed, index); a problem belongs to the
// held-out test split when a hash of its question says so, so the two splits never share a
// question whatever the seeds.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace whale::train {

enum class Task { Addition, Multiplication, Countdown, Algebra };

struct Problem {
  Task task;
  std::string question;  // the user's message
  std::string trace;     // the reasoning, one step per line
  std::string answer;    // what the assistant answers
  // Countdown: the numbers and the target the answer must reach.
  std::vector<int64_t> numbers;
  int64_t target = 0;
};

enum class Split { Train, Test };

const char* task_name(Task t);
Task parse_task(const std::string& name);  // "addition", "multiplication", "countdown", "algebra"
std::vector<Task> all_tasks();
// "all", or a comma-separated list of task names; throws for an unknown or empty list.
std::vector<Task> parse_task_list(const std::string& list);

// The index-th problem of the split (indices count problems of that split only).
Problem make_problem(Task task, Split split, uint64_t seed, int64_t index);

// Whether `reply` (the assistant's final answer text) answers the problem correctly:
// the last integer in it for arithmetic and algebra; for Countdown an expression over the
// given numbers (each used at most once, + - * / and parentheses, exact division) equal to the target.
bool check_answer(const Problem& p, const std::string& reply);

// Countdown expressions: evaluates with integer arithmetic; false when malformed, dividing
// inexactly or by zero, or using a number not offered (or more often than offered).
bool eval_countdown(const std::string& expr, const std::vector<int64_t>& numbers, int64_t& value);

}  // namespace whale::train
