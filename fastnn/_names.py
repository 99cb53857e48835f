"""Names users pass (activations), mapped to the C enum codes in csrc/fastnn.h."""

from __future__ import annotations

#: Activation name -> C code (fnn_act).  ``None`` means identity.
ACTIVATIONS: dict[str, int] = {
    "identity": 0,
    "sigmoid": 1,
    "tanh": 2,
    "relu": 3,
    "leaky_relu": 4,
    "elu": 5,
    "gelu": 6,
    "softplus": 7,
    "silu": 8,
    "softmax": 9,
}
#: Activations whose derivative needs the pre-activation z, not only act(z).
NEEDS_Z = frozenset({"gelu", "silu"})

ALIASES = {"linear": "identity", "logistic": "sigmoid", "swish": "silu"}


def activation_name(activation: str | None, argname: str = "activation") -> str:
    """Canonical activation name; ValueError naming the argument if unknown."""
    if activation is None:
        return "identity"
    if not isinstance(activation, str):
        raise TypeError(f"{argname} must be a str or None, got {type(activation).__name__}")
    name = ALIASES.get(activation.lower(), activation.lower())
    if name not in ACTIVATIONS:
        raise ValueError(
            f"unknown {argname} {activation!r}; expected one of {sorted(ACTIVATIONS)}"
        )
    return name


def activation_code(activation: str | None, argname: str = "activation") -> int:
    """C enum code of an activation name (see :data:`ACTIVATIONS`)."""
    return ACTIVATIONS[activation_name(activation, argname)]
