"""Monitoring: prediction features, reference statistics, drift."""
