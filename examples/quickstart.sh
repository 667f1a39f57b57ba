#!/usr/bin/env bash
# The main job on the bundled sample data, the whole EM-VFER story on 2 CPU cores:
#   write sample data → pre-train on EMER (eye tracker) → PEML fine-tune on DFEW (visual eyes) → evaluate
#   (WAR/UAR table + confusion PNG) → a checkpoint with its model card → predict a clip with the stock pipeline.
# Everything lands in the current directory: sample_data/, emvfer-emer/, emvfer-dfew/.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LAUNCH=(accelerate launch --config_file "$HERE/accelerate_configs/cpu.yaml")
export TOKENIZERS_PARALLELISM=false HF_HUB_DISABLE_TELEMETRY=1

echo "== 1/5 sample data (EMER + DFEW layouts)"
emvfer sample-data --dataset emer dfew --output sample_data --clips-per-class 12

echo "== 2/5 stage 1: pre-training on EMER with the eye-tracker signal"
"${LAUNCH[@]}" "$HERE/pretrain_mert.py" --data_dir sample_data/EMER --model_size small \
    --num_train_epochs 20 --learning_rate 3e-4 --output_dir emvfer-emer

echo "== 3/5 stage 2: PEML fine-tuning on DFEW with the visual eye signal"
"${LAUNCH[@]}" "$HERE/finetune_peml.py" --dataset dfew --data_dir sample_data/DFEW --model_size small \
    --model_name_or_path emvfer-emer --num_train_epochs 20 --learning_rate 5e-4 --output_dir emvfer-dfew

echo "== 4/5 evaluation"
python "$HERE/evaluate.py" --dataset dfew --data_dir sample_data/DFEW --model_name_or_path emvfer-dfew

echo "== 5/5 prediction with transformers' stock pipeline"
python - <<'PY'
import glob
from transformers import pipeline
import emvfer_hf  # noqa: F401

clip = sorted(glob.glob("sample_data/DFEW/Clip/clip_224x224/*"))[0]  # a DFEW frame folder
classifier = pipeline("video-classification", model="emvfer-dfew")
print(clip, classifier(clip, top_k=3))
PY
echo "done: emvfer-dfew/ holds the model, processor, remote code, model card (README.md), results.json"
