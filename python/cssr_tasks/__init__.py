"""cssr_tasks: the Python steps of the cssr-deploy Tekton suite."""

__version__ = "0.1.0"
