"""The original study's "ensemble": L2 and dropout together, with its values (dropout 0.2)."""
from .technique import Alias, register

register(Alias(name="l2_dropout", techniques=("l2", "dropout"), label="Ensemble (L2 + dropout)",
               defaults={"l2": 1.5e-4, "dropout": 0.2}, seed_table1=(1.72, 2.295)))
