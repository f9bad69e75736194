"""The ICPNS two-stage experiment: data protocol, models, metrics, runner."""
