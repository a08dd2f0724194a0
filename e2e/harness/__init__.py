"""The real-cluster tier: build, start, test and stop a single-node Kubernetes on this machine."""
