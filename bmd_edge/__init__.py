"""bmd-edge: femoral-neck BMD from a hip radiograph plus clinical facts, fast on a CPU."""

__version__ = "0.1.0"
