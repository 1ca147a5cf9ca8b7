// Runs a check under every instruction set this CPU supports and Highway compiled (its test
// hook), so the generic kernels stay tested on a machine whose best target has kernels of its
// own (AVX-512 Q4_K/Q6_K tiles, say). The list is that of the including file: one that tests a
// kernel file built with extra targets (HWY_WANT_AVX3_DL) defines the same before any include.
#pragma once
#include <gtest/gtest.h>
#include <hwy/targets.h>

#include <cstdint>

namespace whale::test {

// fn(target) once per target, traced by name; stops at the first fatal failure and leaves the
// real CPU's targets in place however it ends.
template <class Fn>
void for_each_simd_target(Fn&& fn) {
  struct Restore {
    ~Restore() { hwy::SetSupportedTargetsForTest(0); }
  } restore;
  for (const int64_t target : hwy::SupportedAndGeneratedTargets()) {
    hwy::SetSupportedTargetsForTest(target);
    SCOPED_TRACE(hwy::TargetName(target));
    fn(target);
    if (::testing::Test::HasFatalFailure()) return;
  }
}

}  // namespace whale::test
