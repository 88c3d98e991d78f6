"""Churn warning and retention pipeline on Spark and Delta Lake."""

from setuptools import find_packages, setup

setup(
    name="churnlake",
    version="0.1.0",
    description="Telecom churn warning and retention pipeline on Spark and Delta Lake",
    python_requires=">=3.11,<3.13",
    packages=find_packages(
        include=["pipelines", "pipelines.*", "features", "features.*", "models", "models.*"]
    ),
    include_package_data=True,
    install_requires=[
        "pyspark>=4.0,<5",
        "deltalake>=1.2,<2",
        "delta-spark>=4.0,<5",
        "lightgbm>=4.3,<5",
        "scikit-learn>=1.5,<2",
        "mlflow>=3.0,<4",
        "pyyaml>=6.0,<7",
        "pyarrow>=16,<27",
        # PySpark 4.x warns that pandas 3 is not fully supported yet.
        "pandas>=2.2,<3",
        "numpy>=1.26,<3",
        "pydantic>=2.6,<3",
        "matplotlib>=3.8,<4",
        # confidence intervals of the campaign effect (difference of two proportions, Newcombe)
        "statsmodels>=0.14,<0.16",
        # ISA-L gzip for the sample-data generator (faster than zlib at level 1).
        "isal>=1.6,<2",
        # analyst SQL over the lake (make sql) and the demo summary; the Delta extension on PyPI is built
        # for duckdb 1.4.4 exactly
        "duckdb==1.4.4",
        "duckdb-ext-delta==1.4.4.*",
    ],
    extras_require={
        "dev": [
            "pytest>=8,<10",
            "hypothesis>=6.100,<7",
            # an independent EMPC implementation the metric is tested against
            "empulse>=0.13,<0.14",
            # an independent Qini coefficient the uplift evaluation is tested against
            "scikit-uplift>=0.5,<0.6",
            "ruff>=0.6",
            "mypy>=1.10",
            "types-PyYAML",
            "pre-commit>=3.5",
            "polars>=1.0",
            "nbformat>=5.9",
            "nbclient>=0.10",
            "ipykernel>=6.29",
        ],
    },
)
