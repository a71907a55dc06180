"""Package discovery lives here (pyproject.toml holds everything else) for one mapping pyproject cannot express next
to `packages.find`: the top-level `model_cards/` folder, the one source of the model-card templates, ships inside the
wheel as `modeling/publishing/model_cards/`, so a regular (non-editable) install publishes too."""

from setuptools import find_namespace_packages, setup


setup(
    packages=[*find_namespace_packages(include=["modeling*"]), "modeling.publishing.model_cards"],
    package_dir={"modeling.publishing.model_cards": "model_cards"},
)
