"""A local node whose pods are real processes in their own network and UTS namespaces."""
