// The pinned Unicode tables and the regex rewriting behind the pre-tokenizer
// (tokenizer/unicode.h); tests/tokenizer/test_unicode.py checks every code point against HF.
#include <gtest/gtest.h>

#include "tokenizer/unicode.h"

namespace whale::unicode {
namespace {

TEST(Unicode, TablesArePinnedToTheVersionHfTokenizersKnows) {
  EXPECT_STREQ(kVersion, "16.0.0");
  EXPECT_EQ(category('A'), Category::Lu);
  EXPECT_EQ(category(0x4E2D), Category::Lo);    // 中
  EXPECT_EQ(category(0x1FA77), Category::So);   // 🩷, Unicode 15.0
  EXPECT_EQ(category(0x10D50), Category::Lu);   // Garay capital letter, Unicode 16.0
  EXPECT_EQ(category(0x2EBF0), Category::Lo);   // CJK Extension I, Unicode 15.1
  EXPECT_EQ(category(0x1FAEA), Category::Cn);   // Unicode 17.0: unassigned here, as in HF tokenizers
  EXPECT_EQ(category(0x0378), Category::Cn);
  EXPECT_EQ(category(0x0301), Category::Mn);
  EXPECT_EQ(category(0x10FFFF), Category::Cn);
  for (size_t i = 1; i < kCategoryRangeCount; ++i) ASSERT_LT(kCategoryRanges[i - 1].last, kCategoryRanges[i].first);
}

TEST(Unicode, SetsAndProperties) {
  CodePointSet s;
  ASSERT_TRUE(property("N", s));
  CodePointSet nd;
  ASSERT_TRUE(property("Decimal_Number", nd));
  EXPECT_EQ(set_union(s, nd), s);  // Nd is part of N
  EXPECT_EQ(complement(complement(s)), s);
  EXPECT_EQ(complement({{0, 0x10FFFF}}), CodePointSet{});
  EXPECT_EQ(complement({{5, 9}}), (CodePointSet{{0, 4}, {10, 0x10FFFF}}));
  EXPECT_FALSE(property("Han", s));  // scripts are not modelled
  const CodePointSet sp = space_set();
  EXPECT_EQ(sp.front(), (std::pair<uint32_t, uint32_t>{0x09, 0x0D}));
}

TEST(Unicode, PatternsGetExplicitClasses) {
  EXPECT_EQ(pin_classes("abc"), "abc");
  EXPECT_EQ(pin_classes(R"(\r\n|\(x\))"), R"(\r\n|\(x\))");
  EXPECT_EQ(pin_classes("[a-c]+"), "[\\x{61}-\\x{63}]+");
  EXPECT_EQ(pin_classes("[^\\r\\n]"), "[^\\x{A}\\x{D}]");
  const std::string n = pin_classes("\\p{N}{1,3}");
  EXPECT_EQ(n.substr(0, 10), "[\\x{30}-\\x");
  EXPECT_EQ(n.substr(n.size() - 7), "}]{1,3}");
  EXPECT_EQ(pin_classes("\\P{N}").substr(0, 2), "[\\");  // the complement, spelled out
  EXPECT_EQ(pin_classes("[^\\s\\p{L}]").substr(0, 3), "[^\\");
  EXPECT_EQ(pin_classes("\\p{Han}+"), "\\p{Han}+");    // unknown property: left to the engine
  EXPECT_EQ(pin_classes("[\\p{Han}a]"), "[\\p{Han}a]");
  EXPECT_EQ(pin_classes("[[a]]"), "[[a]]");
  EXPECT_EQ(pin_classes("[\\x{4E00}-\\x{9FA5}]"), "[\\x{4E00}-\\x{9FA5}]");
  EXPECT_EQ(pin_classes("[一-龥]"), "[\\x{4E00}-\\x{9FA5}]");
  // Surrogates never appear in an emitted class.
  const std::string c = pin_classes("\\p{C}");
  for (size_t at = c.find("{"); at != std::string::npos; at = c.find("{", at + 1)) {
    const unsigned long cp = std::stoul(c.substr(at + 1), nullptr, 16);
    EXPECT_FALSE(cp >= 0xD800 && cp <= 0xDFFF) << std::hex << cp;
  }
}

}  // namespace
}  // namespace whale::unicode
