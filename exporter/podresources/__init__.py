"""Kubelet pod-resources API v1 client (List only): which container holds which device."""
