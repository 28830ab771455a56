#include "catch.hpp"
#include "helpers.h"
#include "yocotron/log.h"

TEST_CASE("log lines carry the rank and reach the per-rank file", "[config]") {
  auto dir = yt::test::temp_dir("log");
  auto path = dir / "logs" / "rank3.log";
  yt::log::init(3);
  yt::log::set_level(yt::log::Level::Info);
  yt::log::add_file(path.string());
  yt::log::info("hello from ", 3, " ranks");
  yt::log::debug("not shown at info level");
  yt::log::flush();
  std::string text = yt::test::read_file(path);
  CHECK_THAT(text, ContainsSubstring("[rank 3] info: hello from 3 ranks"));
  CHECK(text.find("not shown") == std::string::npos);
  CHECK_THROWS_WITH(yt::log::parse_level("loud"), ContainsSubstring("unknown log level 'loud'"));
  yt::log::init(0);
  yt::log::set_level(yt::log::Level::Warn);
}
