"""izray: InstructZero as a distributed optimizer on Ray.

Finds the instruction a black-box LLM does best with: soft prompts searched by Bayesian
optimization are turned into instructions by an open-source LLM and scored by the black box.
"""

__version__ = "0.1.0"
