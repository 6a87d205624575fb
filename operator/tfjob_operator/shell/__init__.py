"""The I/O shell: watches that feed the caches, the work queue, the controller that runs a pass
over the core and applies its decision, the HTTP client, peering and metrics. The only code that
talks to the API server."""
