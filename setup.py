"""Packaging for emvfer-hf: EM-VFER (eye-movement-instructed video facial expression recognition) for Hugging Face."""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent

install_requires = [
    "torch>=2.4",
    "torchvision>=0.19",
    "transformers>=5.0",
    "accelerate>=1.0",
    "datasets>=3.0",
    "huggingface_hub>=0.34",
    "safetensors>=0.4",
    "av>=12.0",
    "opencv-python-headless>=4.8",
    # 2.6 pins torch<2.3 and numpy<2; 2.5.3 ships the MTCNN weights inside the wheel (offline face detection).
    "facenet-pytorch>=2.5.3,<2.6",
    # LiteRT runs the MediaPipe face-mesh and iris models shipped in the package (dense eye landmarks). Its wheels are
    # for Linux and Apple-silicon macOS; elsewhere the faces module falls back to MTCNN's 5 points with a warning.
    "ai-edge-litert>=1.2; platform_system == 'Linux' or (platform_system == 'Darwin' and platform_machine == 'arm64')",
    "scipy>=1.10",
    "numpy>=1.24",
    "scikit-learn>=1.3",
    "pandas>=2.0",
    "openpyxl>=3.1",
    "matplotlib>=3.7",
    "pillow>=10.0",
    "tqdm>=4.60",
]

# ONNX export and the onnxruntime runtime (`emvfer export`, `emvfer predict --runtime onnx`); onnxscript is the
# dynamo exporter's translator. All three install from wheels and work with numpy 2.
onnx_requires = ["onnx>=1.17", "onnxruntime>=1.20", "onnxscript>=0.2"]

# The Gradio demo page (`emvfer demo`, app.py); gradio brings gradio_client, httpx and uvicorn.
demo_requires = ["gradio>=6.0,<7"]  # 6: theme and css are arguments of launch()

# Face identity by embedding (`--identity dlib`, the default where installed): dlib's ResNet face descriptor. dlib-bin is
# dlib as prebuilt wheels (no compiler, no CMake); face-recognition-models holds the model files (CC0 1.0: its
# LICENSE; nothing is downloaded at run time). Without them faces are re-identified by their colour histogram.
identity_requires = ["dlib-bin>=19.24", "face-recognition-models>=0.3.0"]

extras = {
    # parameterized: imported by transformers' common tests (run from the transformers sdist, tests/registry_data.py)
    # remodnav, pymovements: the peers of benchmarks/bench_events.py (event detection against human coders)
    "test": ["pytest>=8.0", "pytest-timeout>=2.3", "scikit-video>=1.1.11", "eyelinkio>=0.3", "parameterized>=0.9",
             "remodnav==1.1.2", "pymovements>=0.28",
             *onnx_requires, *identity_requires,
             # tests/test_demo.py: the page through gradio_client and Debian's chromium (driven by Selenium)
             *demo_requires, "selenium>=4.11"],
    "onnx": onnx_requires,
    "identity": identity_requires,
    "demo": demo_requires,
    # EyeLink EDF recordings (`emvfer_hf.eyetracking.read_eyelink_edf`); eyelinkio bundles SR Research's EDF API.
    "eyelink": ["eyelinkio>=0.3"],
    "train": ["tensorboard>=2.14"],
    "dev": ["ruff>=0.5"],
}
extras["dev"] = sorted(set(extras["dev"] + extras["test"] + extras["train"]))

setup(
    name="emvfer-hf",
    version="0.1.0",
    description="EM-VFER: eye-movement-instructed robust video facial expression recognition, for the Hugging Face ecosystem",
    long_description=(HERE / "README.md").read_text(encoding="utf-8") if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    package_dir={"": "src"},
    packages=find_packages("src"),
    include_package_data=True,
    package_data={"emvfer_hf": ["training/*.md", "weights/mediapipe/*"]},
    python_requires=">=3.10",
    install_requires=install_requires,
    extras_require=extras,
    entry_points={"console_scripts": ["emvfer=emvfer_hf.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
