#include "commands.h"
#include "yocotron/cli_args.h"
#include "yocotron/trainer.h"

namespace yt::cli {

int run_train(const Args& args) {
  ArgParser p("train", "Train the model a recipe describes on its data, writing the loss curve and checkpoints to a\n"
                       "run directory. Launch with `mpirun -np N yocotron train ...` for several processes.");
  p.option("--config", "RECIPE", "the recipe")
      .option("--set", "SECTION.KEY=VALUE", "override one recipe key (repeatable)", true)
      .option("--run-dir", "DIR", "run directory (default: log.run_dir, else runs/<recipe name>)")
      .option("--resume", "auto|none|PATH",
              "auto (default): continue from the newest checkpoint that verifies; none: start fresh (refused when "
              "the run directory has checkpoints); PATH: that checkpoint, or a run directory (its newest checkpoint "
              "that verifies)");
  p.epilog("Run directory: config.yaml, metrics.jsonl, metrics.csv, logs/rank<N>.log, checkpoints/step_<8 digits>/,\n"
           "checkpoints/latest, .lock (one trainer at a time). SIGTERM/SIGINT/SIGUSR1 (under mpirun: SIGUSR1 to\n"
           "mpirun): finish the step or evaluation batch, checkpoint, exit 75 (a second signal exits at once).\n"
           "Exit status: 0 finished, 75 stopped by a signal (resume me), 1 runtime error, 2 bad input.");
  if (!p.parse(args)) return 0;
  if (!p.has("--config")) throw UsageError("missing --config RECIPE");
  RunOptions o;
  o.recipe = p.get("--config");
  o.overrides = p.all("--set");
  o.run_dir = p.get("--run-dir");
  o.resume = p.get("--resume", "auto");
  return run_training(o);
}

}  // namespace yt::cli
