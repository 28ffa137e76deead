"""Tests of the Helm chart helm/etcdpy: lint, render and validate with the real helm binary and
kubernetes-validate, no cluster."""
