"""Deployment: NIR export/import (:mod:`neurosculpt.export.nir`) and the CLI commands."""
