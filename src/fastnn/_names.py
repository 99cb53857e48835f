"""Names users pass (activations); their C enum codes come from csrc/fastnn.h through the
compiled module (``fastnn._kernels.ACTIVATIONS``), never retyped here.

This module imports nothing compiled, so that :mod:`fastnn.reference` works without the
extension; :func:`activation_code` loads the codes on first use.
"""

from __future__ import annotations

#: The activation names fastnn accepts (canonical spelling); ``None`` means identity.
ACTIVATION_NAMES: tuple[str, ...] = (
    "identity", "sigmoid", "tanh", "relu", "leaky_relu", "elu", "gelu", "softplus", "silu",
    "softmax",
)
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
    if name not in ACTIVATION_NAMES:
        raise ValueError(
            f"unknown {argname} {activation!r}; expected one of {sorted(ACTIVATION_NAMES)}"
        )
    return name


def activation_code(activation: str | None, argname: str = "activation") -> int:
    """C enum code (``fnn_act``) of an activation name, read from the compiled module."""
    from ._kernels import ACTIVATIONS  # the C enum, through Cython

    return ACTIVATIONS[activation_name(activation, argname)]


#: Every kernel of :mod:`fastnn.kernels`; :mod:`fastnn.reference` has a twin of each.
KERNELS: tuple[str, ...] = (
    "gemm", "dense_forward", "dense_backward", "activation_forward", "activation_backward",
    "cross_entropy", "mse", "binary_cross_entropy", "sgd_update", "sgd_step", "adam_step",
    "rmsprop_step", "adagrad_step", "dropout_forward", "dropout_backward", "conv2d_forward",
    "conv2d_backward", "maxpool2d_forward", "maxpool2d_backward", "avgpool2d_forward",
    "avgpool2d_backward", "global_avgpool_forward", "global_avgpool_backward",
    "embedding_forward", "embedding_backward", "global_avgpool1d_forward",
    "global_avgpool1d_backward",
    "batchnorm_forward", "batchnorm_backward", "batchnorm_update_stats", "layernorm_forward",
    "layernorm_backward", "round_bf16",
)
