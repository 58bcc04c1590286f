"""`Lineage`: where an inherited model came from, the record a sliced config carries as `config.inheritune`."""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Lineage:
    """Where an inherited model came from; written into its config as `config.inheritune`.

    Stored as a plain dict (`to_dict`) so it survives `save_pretrained` and plain `AutoConfig` loading; read back
    with `Lineage.from_dict(config.inheritune)`. The model card, `grow` and the recipes all read this one record.
    """

    source: str
    source_model_type: str
    source_num_layers: int
    source_layers: list[int]
    random_init: bool = False
    reinitialized: list[str] = field(default_factory=list)
    grown_from: dict[str, Any] | None = None
    method: str = "inheritune"
    paper: str = "arXiv:2404.08634"

    def __post_init__(self) -> None:
        if self.random_init and not self.reinitialized:
            self.reinitialized = ["all"]  # the same-size baseline: nothing was inherited

    @property
    def num_layers(self) -> int:
        return len(self.source_layers)

    def to_dict(self) -> dict[str, Any]:
        """The config's `inheritune` dict: the fields in reading order, `num_layers` spelled out for readers."""
        values = asdict(self)
        data = {"method": self.method, "paper": self.paper}
        data |= {key: values[key] for key in ("source", "source_model_type", "source_num_layers", "source_layers")}
        data |= {"num_layers": self.num_layers, "random_init": self.random_init, "reinitialized": self.reinitialized}
        if self.grown_from is not None:
            data["grown_from"] = self.grown_from
        return copy.deepcopy(data)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Lineage:
        """The inverse of `to_dict` (`num_layers` is derived, so it is not read)."""
        known = {f for f in cls.__dataclass_fields__}
        return cls(**copy.deepcopy({key: value for key, value in data.items() if key in known}))
