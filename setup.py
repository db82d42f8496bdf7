from setuptools import find_packages, setup

setup(
    name="fairseq-tp",
    version="0.1.0",
    description="Few-shot temporal pruning: fast decoding schedules for diffusion text generators in fairseq",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["fairseq_tp", "fairseq_tp.*"]),
    python_requires=">=3.8",
    install_requires=[
        "torch>=2.6",
        # Stock fairseq 0.12.2 does not import on Python >= 3.11 (dataclass mutable default).
        "fairseq-fixed==0.12.3.1; python_version >= '3.11'",
        "fairseq==0.12.2; python_version < '3.11'",
        "botorch>=0.17; python_version >= '3.11'",
        "botorch<=0.16.1; python_version < '3.11'",
        "gpytorch",
        "sacrebleu>=2.0",
        "sacremoses",
        "tqdm",
        "matplotlib",
        "numpy",
    ],
    # paper: the Temporal Pruning paper's own search (--strategy paper), a baseline
    extras_require={"test": ["pytest"], "examples": ["subword-nmt"], "paper": ["scikit-optimize>=0.10"]},
    entry_points={"console_scripts": ["fairseq-tp-search = fairseq_tp.fairseq_search.cli:main"]},
)
