"""A demo page for MERT (EM-VFER), in the convention of Hugging Face Spaces: a Gradio app.

Upload or record a video; the page shows the whole clip's top-k expressions, the eye-signal instruction weight W
(Eq. 5: the share of the eye-movement prior in the fused representation), the visual eye-movement series (the five
canonical channels of §3.1) and the expression timeline of the recording (`emvfer_hf.analysis.analyze_video`).

    from emvfer_hf.demo import build_demo, launch_demo
    demo = build_demo("path/to/checkpoint")
    launch_demo(demo)                       # http://127.0.0.1:7860

The main function answers `gradio_client` at `api_name="/predict"`:

    from gradio_client import Client, handle_file
    labels, weight, eye_plot, timeline_plot, timeline_table = Client(url).predict(handle_file("clip.mp4"),
                                                                                  api_name="/predict")

Safety defaults: the server binds to 127.0.0.1 (`host` opens it to a network), uploads are capped at
`DEFAULT_MAX_FILE_SIZE` and clips at `DEFAULT_MAX_DURATION_S` (read from the container with PyAV before any
decoding), and an upload that is not a video (an image, an audio-only file, a text file named .mp4) gets a message
instead of a stack trace. Uploads, recordings and plots are deleted after `OUTPUT_MAX_AGE_S` (an hour). Gradio is the
optional extra `pip install "emvfer-hf[demo]"`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
DEFAULT_MAX_FILE_SIZE = "200mb"
DEFAULT_MAX_DURATION_S = 600.0
#: uploads, recordings and plots are deleted after this long (seconds): the page keeps no videos of faces
OUTPUT_MAX_AGE_S = 3600

#: the timeline columns shown in the page's table (the DataFrame of `analyze_video` has one `p_<class>` per class too)
TIMELINE_TABLE_COLUMNS = ("track_id", "start_s", "end_s", "label", "score", "instruction_weight", "blinks",
                          "saccade_rate", "valid_fraction", "reason")  # fmt: skip


def _require_gradio():
    try:
        import gradio
    except ImportError as error:
        raise ImportError(
            'emvfer_hf.demo needs Gradio: pip install "emvfer-hf[demo]" (the optional extra `demo`)'
        ) from error
    return gradio


# ----------------------------------------------------------------------------------------------------------------------
# Checking an upload before analysis
def _is_image_format(format_name: str) -> bool:
    """FFmpeg opens still images as one-frame videos (demuxers `image2`, `png_pipe`, `jpeg_pipe`, ...)."""
    return format_name == "image2" or format_name.endswith("_pipe")


def check_upload(path, max_duration_s: float | None = None):
    """Check that `path` is a video with a moving-picture stream, and at most `max_duration_s` long; returns its
    `VideoInfo` (`emvfer_hf.video_io_mert.probe_video`: frame rate, size, duration, …).

    Only the container header is read (plus, for files that do not state their length, e.g. browser webcam
    recordings in WebM, a count of the video packets); nothing is decoded.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is empty, is not a media file, is an image, has no video stream (audio only), or is
            longer than `max_duration_s`; the message names the file.
    """
    from .video_io_mert import DEFAULT_FPS, probe_video

    path = Path(path)
    name = path.name
    try:
        info = probe_video(path, count_frames=False)
        if info.duration_s is None:  # no length in the header (browser WebM recordings): count the packets
            info = probe_video(path)
    except (FileNotFoundError, ValueError) as error:  # named by the file's name: the page never shows server paths
        raise type(error)(str(error).replace(str(path), name)) from error
    if _is_image_format(info.format):
        raise ValueError(f"{name}: this is a still image ({info.format}), not a video; upload a video clip")
    if info.duration_s is None:
        info.duration_s = (info.num_frames or 0) / (info.fps or DEFAULT_FPS)
    if max_duration_s is not None and info.duration_s > max_duration_s:
        raise ValueError(
            f"{name}: the video is {info.duration_s:.1f} s long; this demo accepts at most {max_duration_s:g} s "
            "(use `emvfer analyze` for long recordings)"
        )
    return info


# ----------------------------------------------------------------------------------------------------------------------
# The page's main function
def _user_message(error: Exception, path) -> str:
    """The error's message with the server-side upload path replaced by the file's name."""
    message = str(error).replace(str(path), Path(path).name)
    if "no face" in message and "allow_no_face" in message:  # the library's hint is not for the page's users
        return f"{Path(path).name}: no face found in the video; upload a clip in which a face is visible"
    return message


class MERTDemo:
    """A loaded MERT checkpoint and the demo's limits; `predict` is the page's main function.

    Args:
        model: a `MERTForVideoClassification` (or any model whose output has `logits` and `instruction_weights`).
        processor: its `MERTVideoProcessor`.
        device (`str`): where the model runs.
        top_k (`int`): the labels shown.
        max_duration_s (`float`): longest clip accepted (seconds).
        window, stride (`float`): the timeline's window and stride (seconds), as in `emvfer analyze`.
        max_faces (`int`, *optional*): the faces tracked in the timeline (None: all).
        batch_size (`int`, optional): timeline windows per model call (default: 1 on a CPU, 8 on a GPU).
    """

    def __init__(self, model, processor, device: str = "cpu", top_k: int = 3,
                 max_duration_s: float = DEFAULT_MAX_DURATION_S, window: float = 2.0, stride: float = 1.0,
                 max_faces: int | None = None, batch_size: int | None = None):  # fmt: skip
        from .inference import Classifier
        from .precision import inference_model, resolve_dtype

        self.classifier = Classifier(model, device)
        self.model = self.classifier.model
        # the timeline's model in `analyze`'s precision ("auto"), converted once for every request
        self.timeline_model = inference_model(self.model, resolve_dtype("auto", device), device)
        self.processor = processor
        self.device = device
        self.top_k = max(1, min(top_k, model.config.num_labels))
        self.max_duration_s = max_duration_s
        self.window, self.stride, self.max_faces, self.batch_size = window, stride, max_faces, batch_size
        self.workdir = Path(tempfile.mkdtemp(prefix="emvfer-demo-"))

    def classify_clip(self, video_path):
        """The whole clip through the processor and the model.

        Returns:
            `(probabilities, instruction_weight, eye_series)`: `{label: probability}` over all classes, W (None
            for a checkpoint without eye prior) and the per-frame `EyeMovementSeries` the processor extracted.
        """
        inputs = self.processor(str(video_path), return_tensors="pt", return_eye_series=True)
        series = inputs.pop("eye_series")[0]
        prediction = self.classifier(inputs)
        return prediction.probabilities(0), prediction.weight(0), series

    def timeline(self, video_path, progress: bool = False):
        """The recording's expression timeline: `(DataFrame, PNG path)` from `emvfer_hf.analysis.analyze_video`
        (`progress`: its tqdm bar, which the page shows)."""
        from .analysis import analyze_video, plot_timeline

        table = analyze_video(str(video_path), self.timeline_model, self.processor, window=self.window,
                              stride=self.stride, max_faces=self.max_faces, batch_size=self.batch_size, device=self.device,
                              progress=progress)  # fmt: skip
        png = self._output_path(video_path, "timeline.png")
        plot_timeline(table, path=png, title=f"expression timeline — {Path(video_path).name}")
        return table, png

    def _output_path(self, video_path, suffix: str) -> Path:
        """A fresh file path for one plot (Gradio copies it into its cache; `_prune_outputs` removes it later)."""
        folder = Path(tempfile.mkdtemp(dir=self.workdir))
        return folder / f"{Path(video_path).stem}_{suffix}"

    def _prune_outputs(self, max_age_s: float = OUTPUT_MAX_AGE_S) -> None:
        """Delete the plots of requests older than `max_age_s`: a long-running page keeps no pictures of faces."""
        import shutil
        import time

        for folder in self.workdir.iterdir():
            if time.time() - folder.stat().st_mtime > max_age_s:
                shutil.rmtree(folder, ignore_errors=True)

    def predict(self, video_path, progress: bool = False):
        """The page's main function (`api_name="/predict"`).

        Args:
            video_path (`str`): the uploaded or recorded video.
            progress (`bool`): show the timeline's progress bar (seconds of video analysed).
        Returns:
            `(labels, instruction_weight, eye_plot, timeline_plot, timeline_table)`: `{label: probability}` for
            `gr.Label`, W (`float`, None without eye prior), the PNG of the eye-movement channels, the PNG of the
            timeline and its table (a `pandas.DataFrame` of `TIMELINE_TABLE_COLUMNS`).
        Raises:
            gradio.Error: no video, or one that is not a video, too long, or without a face (the message says which).
        """
        gr = _require_gradio()
        from .visualization import plot_eye_movements

        self._prune_outputs()
        if not video_path:
            raise gr.Error("Upload or record a video first.")
        try:
            check_upload(video_path, self.max_duration_s)
            probabilities, weight, series = self.classify_clip(video_path)
            table, timeline_png = self.timeline(video_path, progress=progress)
        except (ValueError, FileNotFoundError) as error:
            raise gr.Error(_user_message(error, video_path)) from error
        eye_png = plot_eye_movements(series, self._output_path(video_path, "eyes.png"),
                                     title=f"{Path(video_path).name}: eye movements")  # fmt: skip
        columns = [c for c in TIMELINE_TABLE_COLUMNS if c in table.columns]
        return probabilities, weight, str(eye_png), str(timeline_png), table[columns].round(3)


# ----------------------------------------------------------------------------------------------------------------------
# The page
def _local_theme(gr):
    """Gradio's default theme with the system's fonts: the page loads nothing from outside the server."""
    return gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                             font_mono=["ui-monospace", "Consolas", "monospace"])  # fmt: skip


def build_demo(model_dir=None, *, model=None, processor=None, device: str = "cpu", top_k: int = 3,
               max_duration_s: float = DEFAULT_MAX_DURATION_S, window: float = 2.0, stride: float = 1.0,
               max_faces: int | None = None, title: str = "EM-VFER: facial expressions with eye movements"):  # fmt: skip
    """The demo page (a `gr.Blocks`); launch it with `launch_demo`.

    Args:
        model_dir: the checkpoint folder (or Hub id); or pass `model` and `processor` already loaded.
        device, top_k, max_duration_s, window, stride, max_faces: see `MERTDemo`.
        title (`str`): the page's heading.
    """
    gr = _require_gradio()
    if model is None or processor is None:
        if model_dir is None:
            raise ValueError("build_demo: give a checkpoint folder (model_dir) or both model and processor")
        from .analysis import load_checkpoint

        model, processor = load_checkpoint(model_dir, device)
    app = MERTDemo(model, processor, device=device, top_k=top_k, max_duration_s=max_duration_s, window=window,
                   stride=stride, max_faces=max_faces)  # fmt: skip

    # delete_cache: every 15 min, Gradio deletes the uploads and recordings older than OUTPUT_MAX_AGE_S
    with gr.Blocks(title=title, analytics_enabled=False, delete_cache=(900, OUTPUT_MAX_AGE_S)) as demo:
        gr.Markdown(
            f"# {title}\n"
            "Upload or record a short video of a face. MERT (Liu et al., EM-VFER) reads the facial expression from "
            "the face crops, instructed by the eye movements it measures in the same video (pupils, gaze, "
            f"fixations, saccades, blinks). Clips up to {max_duration_s:g} s."
        )
        with gr.Row():
            with gr.Column():
                video = gr.Video(sources=["upload", "webcam"], include_audio=True, label="Video", elem_id="video")
                submit = gr.Button("Analyse", variant="primary", elem_id="submit")
            with gr.Column():
                labels = gr.Label(num_top_classes=app.top_k, label="Expression (whole clip)", elem_id="labels")
                weight = gr.Number(label="Eye-signal instruction weight W", precision=3, elem_id="weight")
        timeline_plot = gr.Image(type="filepath", label="Timeline", elem_id="timeline-plot")
        timeline_table = gr.Dataframe(label="Timeline (one row per face track and window)", elem_id="timeline")
        eye_plot = gr.Image(type="filepath", label="Eye movements", elem_id="eye-plot")
        def predict(video_path, progress=gr.Progress(track_tqdm=True)):  # noqa: B008  (Gradio's progress idiom)
            """`MERTDemo.predict`, with the timeline's progress bar on the page."""
            return app.predict(video_path, progress=True)

        submit.click(predict, inputs=video, outputs=[labels, weight, eye_plot, timeline_plot, timeline_table],
                     api_name="predict")  # fmt: skip
    demo.emvfer_app = app  # the loaded model and limits, for callers that want them
    return demo


def launch_demo(demo, host: str = DEFAULT_HOST, port: int | None = DEFAULT_PORT,
                max_file_size=DEFAULT_MAX_FILE_SIZE, **launch_kwargs):  # fmt: skip
    """Serve the page. Binds to `host` (127.0.0.1 by default: this machine only) and refuses uploads larger than
    `max_file_size` (`"200mb"`, or bytes). Extra keyword arguments go to `gr.Blocks.launch` (`share=True`
    publishes the page through Gradio's tunnel: off unless asked for)."""
    gr = _require_gradio()
    launch_kwargs.setdefault("share", False)  # Gradio would turn a share link on by itself inside Colab or Kaggle
    return demo.launch(server_name=host, server_port=port, max_file_size=max_file_size, theme=_local_theme(gr),
                       **launch_kwargs)  # fmt: skip
