"""Programs that run inside the job's pods, by the trainer image's own Python: standard library
only, read as text and shipped in the pod spec, never imported by the operator."""
