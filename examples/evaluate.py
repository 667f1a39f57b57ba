#!/usr/bin/env python
"""Evaluate saved MERT checkpoints on a benchmark: per-fold metrics and mean ± std (DFEW, MAFW, EMER), or LOSO on
the concatenated predictions (CASME II, CAS(ME)^3); a confusion-matrix PNG and results JSON / markdown.

    python examples/evaluate.py                                            # emvfer-dfew on the sample data
    python examples/evaluate.py --dataset dfew --data_dir DFEW/ \
        --model_name_or_path "emvfer-dfew-fold{fold}" --folds 1 2 3 4 5
"""

import argparse

from emvfer_hf.training import add_training_arguments, run_evaluate


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_training_arguments(parser)
    parser.add_argument("--folds", type=int, nargs="*", default=None, help="folds to evaluate ({fold} in the path)")
    parser.add_argument("--eye_source", choices=("visual", "tracker", "none"), default="visual",
                        help="where the eye series comes from (default: read from the video, as at deployment)")
    return parser.parse_args(argv)


def main(argv=None):
    run_evaluate(parse_args(argv))


if __name__ == "__main__":
    main()
