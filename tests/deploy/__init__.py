"""Tests of deploy/: systemd units, compose files, Dockerfiles, Kubernetes manifests."""
