"""Ray Tune sweeps over the config: the search space (space.py, no Ray) and the sweep driver (sweep.py)."""
