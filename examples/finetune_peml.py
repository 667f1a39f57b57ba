#!/usr/bin/env python
"""Stage 2 of EM-VFER: PEML fine-tuning of a pre-trained MERT with the VISUAL eye-movement signal.

Both encoders are frozen; prompts (eye prompts scaled by the instruction weight W), fusion, head and the progressive
level heads train (eqs. [8]-[12]). Early stopping and the best model (--early_stopping_patience,
--metric_for_best_model) read a validation split carved from the training fold (--validation_fraction: by subject /
video where the dataset has them, else stratified by label); the test fold is scored once, at the end, with the
dataset's official metrics. Saves model + processor + model card to --output_dir (default emvfer-<dataset>).

    accelerate launch examples/finetune_peml.py                           # the bundled sample data (DFEW layout)
    accelerate launch examples/finetune_peml.py --dataset dfew --data_dir DFEW/ --fold 1 \
        --model_name_or_path emvfer-emer
    accelerate launch examples/finetune_peml.py --dataset casme2 --data_dir CASME2/ --protocol loso
"""

import argparse

from emvfer_hf.training import add_training_arguments, run_finetune


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_training_arguments(parser)
    return parser.parse_args(argv)


def main(argv=None):
    run_finetune(parse_args(argv))


if __name__ == "__main__":
    main()
