"""The TensorFlowJob API models; the CRD is generated from them."""
