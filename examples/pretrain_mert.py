#!/usr/bin/env python
"""Stage 1 of EM-VFER: pre-train MERT on EMER with the high-quality eye-tracker signal (CE loss, eq. [2]).

Before training, the prior Ē (eqs. [9]-[11]) is fitted on the series stage 1 trains on (each training clip's span of
its recording) and stored in the model. With --early_stopping_patience / --metric_for_best_model a validation split
by participant (--validation_fraction) selects the best epoch; the test fold is scored once, at the end. Model +
processor are saved to --output_dir (default emvfer-emer).

    accelerate launch examples/pretrain_mert.py                          # the bundled sample data, small model
    accelerate launch examples/pretrain_mert.py --data_dir EMER/ --fold 1 \
        --model_name_or_path path/to/face-vit-b16 --num_train_epochs 30   # EMER, video encoder from a ViT
"""

import argparse

from emvfer_hf.training import add_training_arguments, run_pretrain


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_training_arguments(parser)
    parser.add_argument("--train_video_encoder", type=lambda s: s.lower() in ("1", "true", "yes"), default=None,
                        help="train the video encoder in pre-training (default: only if it starts from scratch)")
    return parser.parse_args(argv)


def main(argv=None):
    run_pretrain(parse_args(argv))


if __name__ == "__main__":
    main()
