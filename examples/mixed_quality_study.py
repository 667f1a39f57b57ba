#!/usr/bin/env python
"""The mixed-quality study (issue 20, item 5): does W(E', Ē) help where it should? Runs the design committed in
docs/study/mixed_quality_design.md — 7 arms (W ≡ 1, default W, shuffled W, oracle W, paper-literal W, W-weighted
loss, input placement) PEML-fine-tuned from the same stage-1 model per seed, in a target world where half the clips
of every class carry a tracker-quality eye series and half their blurred visual reading — and writes
<output_dir>/mixed_quality.md and mixed_quality.json (manipulation checks, the primary endpoint with its paired
95% CI and verdict, every arm, per-seed numbers).

    python examples/mixed_quality_study.py --output_dir docs/study --work_dir /tmp/mq/work   # as designed: seeds 0-9
    python examples/mixed_quality_study.py --quick --output_dir /tmp/mq_quick               # smoke run, about a minute

Finished runs (stage 1 per seed, each arm per seed) are cached in --work_dir: re-running resumes where it stopped;
the report is rewritten after every finished seed. Do not change --max_train_steps or --pretrain_steps for the
study's report: the design fixes 200 and 400.
"""

import argparse
import logging

from emvfer_hf.study.mixed_quality import add_arguments, run_mixed_quality


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return parser.parse_args(argv)


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    return run_mixed_quality(parse_args(argv))


if __name__ == "__main__":
    main()
