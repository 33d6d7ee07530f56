"""diffclosure: learned stochastic closures for 2-D turbulence with conditional diffusion models."""

__version__ = "0.1.0"
