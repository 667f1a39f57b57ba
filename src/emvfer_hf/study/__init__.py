"""The paper's study, runnable (issue 8): the ablation of Table VI, the prior (Table IX) and distance (Table X) of
the instruction weight, the PEML parts, and the figures (paper Figs. 5–14), as one markdown report.

    python examples/reproduce_study.py                          # bundled sample data, 3 seeds
    python examples/reproduce_study.py --quick                  # smoke run (tiny model, 2 steps)
    python examples/reproduce_study.py --dataset dfew --data_dir DFEW/ --emer_dir EMER/ --seeds 0 1 2

- `variants`: what is trained (`VARIANTS`), how the rows group into tables (`TABLES`) and which claims are checked
  (`CLAIMS`);
- `runner`: data, stage-1 pre-training per seed, one training per variant and seed (cached in `--work_dir`);
- `figures`: features, attention rollout, and the PNGs with the numbers behind them;
- `report`: tables (mean ± std over seeds), verdicts, `report.md`;
- `pipeline.run_study`: all of it in order.
"""

from .pipeline import FIGURE_FILES, run_study
from .runner import add_study_arguments
from .variants import CLAIMS, TABLES, VARIANTS, Variant

__all__ = ["CLAIMS", "FIGURE_FILES", "TABLES", "VARIANTS", "Variant", "add_study_arguments", "run_study"]
