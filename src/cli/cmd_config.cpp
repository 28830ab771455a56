#include <iostream>

#include "commands.h"
#include "yocotron/cli_args.h"
#include "yocotron/config.h"

namespace yt::cli {

int run_config(const Args& args) {
  ArgParser p("config", "Load a recipe (following `base:` links), apply --set overrides, check every key,\n"
                        "and print the fully resolved recipe as YAML.");
  p.option("--config", "RECIPE", "the YAML recipe to resolve")
      .option("--set", "SECTION.KEY=VALUE", "override one key (repeatable), typed by the schema", true);
  if (!p.parse(args)) return 0;
  if (!p.has("--config")) throw UsageError("missing --config RECIPE");
  Config cfg = load_config(p.get("--config"), p.all("--set"));
  std::cout << "# resolved from " << p.get("--config") << "\n" << to_yaml(cfg);
  return 0;
}

}  // namespace yt::cli
