"""Benchmarks of EPMPulse; ``python -m bench`` runs them all (see __main__)."""
