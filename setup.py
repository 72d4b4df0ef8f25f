"""Packages are found, not listed: every package under ``edgeseg/`` and ``export/`` goes into the wheel.

Why a setup.py beside pyproject.toml: pyproject's ``packages.find`` cannot install a folder under another
name, and the layout keeps ``export/`` (installed as ``edgeseg_export``) and ships ``docs/`` inside the
package (``edgeseg/docs``, read by ``edgeseg docs``) so help texts never point at a file a wheel lacks.
Everything else about the package is in pyproject.toml.
"""
from setuptools import find_packages, setup

EXPORT = ["edgeseg_export" + name[len("export"):] for name in find_packages(include=["export", "export.*"])]

setup(
    packages=find_packages(include=["edgeseg", "edgeseg.*"]) + EXPORT + ["edgeseg.docs"],
    package_dir={"edgeseg_export": "export", "edgeseg.docs": "docs"},
)
