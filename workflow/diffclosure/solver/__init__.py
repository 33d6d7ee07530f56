"""Pseudo-spectral 2-D Navier-Stokes solver (vorticity-streamfunction form)."""
