"""No regularization: the baseline every technique is compared with."""
from .technique import Technique, register

register(Technique(
    name="none", tasks=("image", "pos"), stage="penalty", label="No regularization",
    summary="no regularization (the baseline)", reference="-",
    seed_table1=(1.556, 2.347),
))
