#!/usr/bin/env python
"""The paper's study in one command: Table VI (video only → + visual eye movements → + EMER pre-training → + PEML),
Table IX (prior Ē: mean vs multivariate normal), Table X (Euclidean vs cosine distance), the PEML parts (without
prompts, W ≡ 1, without level losses, equal level weights, W-weighted loss), over several seeds with the same budget
for every variant, and the figures (confusion matrices, attention rollout, PCA/LDA of features, eye-feature
distributions, loss curves) — written as <output_dir>/report.md + figures/ + results.json.

    python examples/reproduce_study.py                                     # bundled sample data (EMER → DFEW)
    python examples/reproduce_study.py --quick --output_dir /tmp/study     # smoke run, about a minute
    python examples/reproduce_study.py --dataset dfew --data_dir DFEW/ --emer_dir EMER/ --seeds 0 1 2 \
        --max_train_steps 2000 --pretrain_steps 4000 --vision_model <a ViT-B/16 checkpoint>

Finished runs are cached in --work_dir (default <output_dir>/work): a re-run with the same settings only redraws
the figures and the report; --overwrite retrains.
"""

import argparse
import logging

from emvfer_hf.study import add_study_arguments, run_study


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_study_arguments(parser)
    return parser.parse_args(argv)


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    return run_study(parse_args(argv))


if __name__ == "__main__":
    main()
