from setuptools import find_packages, setup

setup(
    name="fairseq-tp",
    version="0.1.0",
    description="Few-shot temporal pruning: fast decoding schedules for diffusion text generators in fairseq",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["fairseq_tp", "fairseq_tp.*"]),
    # The one range tested; stock fairseq 0.12.2 does not import on 3.11+ (dataclass mutable default),
    # fairseq-fixed does.
    python_requires=">=3.11",
    install_requires=[
        "torch>=2.6",
        "fairseq-fixed==0.12.3.1",
        "botorch>=0.17",
        "gpytorch",
        "sacrebleu>=2.0",
        "tqdm",
        "matplotlib",
        "numpy",
    ],
    # paper: the Temporal Pruning paper's own search (--strategy paper), a baseline
    extras_require={"test": ["pytest", "pytest-xdist"], "examples": ["subword-nmt", "sacremoses"], "paper": ["scikit-optimize>=0.10"]},
    entry_points={"console_scripts": ["fairseq-tp-search = fairseq_tp.fairseq_search.cli:main"]},
)
