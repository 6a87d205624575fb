"""The TensorFlowJob operator: distributed TensorFlow training from one Kubernetes resource."""
