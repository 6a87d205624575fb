"""What runs on the user's machine: the Python SDK, `kubectl tfjob` and job submission, which pack
a local folder and create the job through the API server. Never imported by the operator."""
