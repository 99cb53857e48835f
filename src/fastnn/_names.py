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


#: Every kernel of :mod:`fastnn.kernels`; :mod:`fastnn.reference` has a twin of each.
KERNELS: tuple[str, ...] = (
    "gemm", "dense_forward", "dense_backward", "activation_forward", "activation_backward",
    "cross_entropy", "mse", "binary_cross_entropy", "sgd_update", "sgd_step", "adam_step",
    "rmsprop_step", "adagrad_step", "dropout_forward", "dropout_backward", "conv2d_forward",
    "conv2d_backward", "maxpool2d_forward", "maxpool2d_backward", "avgpool2d_forward",
    "avgpool2d_backward", "global_avgpool_forward", "global_avgpool_backward",
)
