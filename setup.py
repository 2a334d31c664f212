"""Package list for the mapped folders.

exporter/ and operator/ are installed as carbontrack.exporter and
carbontrack.operator (see package-dir in pyproject.toml). setuptools' automatic
discovery does not follow that mapping into sub-packages, so the list is built
here; everything else lives in pyproject.toml.
"""

from setuptools import find_packages, setup

MAPPED = {"carbontrack.exporter": "exporter", "carbontrack.operator": "operator"}

packages = find_packages("src", include=["carbontrack", "carbontrack.*"])
for name, folder in MAPPED.items():
    packages.append(name)
    packages += [f"{name}.{sub}" for sub in find_packages(folder, exclude=["tests", "tests.*"])]

setup(packages=packages)
