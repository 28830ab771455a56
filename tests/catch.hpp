// Catch2 v2 (Debian: <catch2/catch.hpp>) and v3 (GPU nodes: split headers) behind one include.
#pragma once
#if __has_include(<catch2/catch_test_macros.hpp>)
#include <catch2/catch_approx.hpp>
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>
using Catch::Approx;
#define YT_CATCH_V3 1
#else
#include <catch2/catch.hpp>
#endif
#ifndef YT_CATCH_V3
namespace Catch::Matchers {
inline auto ContainsSubstring(const std::string& s) { return Contains(s); }
}  // namespace Catch::Matchers
#endif
using Catch::Matchers::ContainsSubstring;
