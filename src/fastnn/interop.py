"""Bridges to PyTorch and ONNX, where most pretrained weights live.

Both dependencies are optional and imported only when these functions run.
Layouts: ``torch.nn.Linear.weight`` is (out, in); fastnn's ``Dense.weight`` is
(in, out), so weights are transposed on the way in and out.  Convolution kernels
(out_c, in_c, kh, kw) have the same layout in both.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .layers import Activation, Dense, Dropout, Flatten, Layer
from .model import Sequential

_TORCH_ACTS = {"ReLU": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "LeakyReLU": "leaky_relu",
               "ELU": "elu", "GELU": "gelu", "Softplus": "softplus", "SiLU": "silu",
               "Softmax": "softmax", "Identity": "identity"}


def _torch_activation(mod: Any) -> str:
    """Fastnn name of a torch activation module, checking its options match ours."""
    kind = type(mod).__name__
    name = _TORCH_ACTS[kind]
    bad = None
    if kind == "LeakyReLU" and mod.negative_slope != 0.01:
        bad = f"negative_slope={mod.negative_slope} (fastnn's leaky_relu has slope 0.01)"
    elif kind == "ELU" and mod.alpha != 1.0:
        bad = f"alpha={mod.alpha} (fastnn's elu has alpha 1)"
    elif kind == "GELU" and mod.approximate != "none":
        bad = f"approximate={mod.approximate!r} (fastnn's gelu is the exact erf form)"
    elif kind == "Softplus" and mod.beta != 1:
        bad = f"beta={mod.beta} (fastnn's softplus has beta 1)"
    elif kind == "Softmax" and mod.dim not in (-1, 1, None):
        bad = f"dim={mod.dim} (fastnn's softmax is over the last axis)"
    if bad:
        raise ValueError(f"from_torch: unsupported {kind} option {bad}")
    return name


def _torch_modules(module: Any) -> list[Any]:
    import torch

    if isinstance(module, torch.nn.Sequential):
        out = []
        for child in module:
            out.extend(_torch_modules(child))
        return out
    return [module]


_TORCH_CLASSES: dict[str, Any] = {}


def torch_classes() -> dict[str, Any]:
    """The torch modules :func:`to_torch` builds for fastnn layers torch lacks (made once).

    ``TorchResidual(body, shortcut=None, act=None)``: ``act(body(x) + shortcut(x))``
    (``shortcut`` None: the identity), and ``TorchGlobalAvgPool1D()``: the mean over
    dim 1 of (batch, length, features).  :func:`from_torch` reads both back.
    """
    if not _TORCH_CLASSES:
        from torch import nn

        class TorchResidual(nn.Module):
            """``act(body(x) + shortcut(x))``: fastnn's Residual block in torch."""

            def __init__(self, body: Any, shortcut: Any = None, act: Any = None) -> None:
                super().__init__()
                self.body, self.shortcut, self.act = body, shortcut, act

            def forward(self, x: Any) -> Any:
                y = self.body(x) + (x if self.shortcut is None else self.shortcut(x))
                return y if self.act is None else self.act(y)

        class TorchGlobalAvgPool1D(nn.Module):
            """The mean over dim 1: (batch, length, features) -> (batch, features)."""

            def forward(self, x: Any) -> Any:
                return x.mean(dim=1)

        _TORCH_CLASSES.update(TorchResidual=TorchResidual,
                              TorchGlobalAvgPool1D=TorchGlobalAvgPool1D)
    return _TORCH_CLASSES


class _Part:
    """The layers of a block seen as a model (what to_torch and from_torch recurse on)."""

    def __init__(self, layers: list[Layer], dtype: np.dtype) -> None:
        self.layers, self.dtype = layers, dtype


def from_torch(module: Any, dtype: str = "float32", input_shape: tuple[int, ...] | None = None
               ) -> Sequential:
    """Build a fastnn model from a ``torch.nn.Sequential`` of supported layers.

    Supported: Linear, Conv2d (when fastnn has Conv2D), MaxPool2d, AvgPool2d,
    AdaptiveAvgPool2d(1), Flatten(start_dim=1), Dropout, BatchNorm1d, BatchNorm2d
    (with their running statistics), LayerNorm, Identity and the shared
    activations (ReLU, Sigmoid, Tanh, LeakyReLU(0.01), ELU(1), GELU, Softplus(1),
    SiLU, Softmax over the last axis).  An activation right after a Linear or
    Conv2d is fused into it.  Embedding (without padding_idx, max_norm or
    sparse gradients), and the two modules of :func:`torch_classes`: a skip
    connection comes in as a ``TorchResidual`` (what :func:`to_torch` writes for a
    :class:`~fastnn.Residual`); torch's own ResNet blocks (``torchvision``'s
    ``BasicBlock``, or any module whose ``forward`` adds a skip) are code, not a
    structure fastnn can read, and raise ValueError naming the module.

    Parameters
    ----------
    module : torch.nn.Module
    dtype : {"float32", "float64"}
    input_shape : tuple of int, optional
        Per-sample input shape (needed for convolutional models' summaries).

    Returns
    -------
    Sequential
        With the module's weights (copied) and its training mode ignored.
    """
    from . import layers as L

    layers: list[Layer] = []
    weights: list[tuple[Layer, list[np.ndarray]]] = []
    buffers: list[tuple[Layer, dict[str, Any]]] = []  # batch norm's running statistics
    for mod in _torch_modules(module):
        kind = type(mod).__name__
        if kind == "Linear":
            layer = Dense(mod.in_features, mod.out_features, bias=mod.bias is not None)
            vals = [mod.weight.detach().cpu().numpy().T]
            if mod.bias is not None:
                vals.append(mod.bias.detach().cpu().numpy())
            layers.append(layer)
            weights.append((layer, vals))
        elif kind == "Conv2d" and hasattr(L, "Conv2D"):
            if mod.groups != 1 or tuple(mod.dilation) != (1, 1) or mod.padding_mode != "zeros":
                raise ValueError("from_torch: Conv2d with groups, dilation or non-zero padding "
                                 "mode is not supported")
            pad = mod.padding if isinstance(mod.padding, str) else tuple(mod.padding)
            layer = L.Conv2D(mod.in_channels, mod.out_channels, tuple(mod.kernel_size),
                             stride=tuple(mod.stride), padding=pad, bias=mod.bias is not None)
            vals = [mod.weight.detach().cpu().numpy()]
            if mod.bias is not None:
                vals.append(mod.bias.detach().cpu().numpy())
            layers.append(layer)
            weights.append((layer, vals))
        elif kind in ("MaxPool2d", "AvgPool2d") and hasattr(L, "MaxPool2D"):
            cls = L.MaxPool2D if kind == "MaxPool2d" else L.AvgPool2D
            if getattr(mod, "ceil_mode", False) or getattr(mod, "dilation", 1) not in (1, (1, 1)):
                raise ValueError(f"from_torch: {kind} with ceil_mode or dilation is not supported")
            layers.append(cls(mod.kernel_size, stride=mod.stride, padding=mod.padding))
        elif kind == "AdaptiveAvgPool2d" and hasattr(L, "GlobalAvgPool2D"):
            if mod.output_size not in (1, (1, 1)):
                raise ValueError("from_torch: only AdaptiveAvgPool2d(1) is supported")
            layers.append(L.GlobalAvgPool2D())
        elif kind == "Embedding":
            if mod.padding_idx is not None or mod.max_norm is not None or mod.sparse:
                raise ValueError("from_torch: Embedding with padding_idx, max_norm or sparse "
                                 "gradients is not supported")
            layer = L.Embedding(mod.num_embeddings, mod.embedding_dim)
            layers.append(layer)
            weights.append((layer, [mod.weight.detach().cpu().numpy()]))
        elif kind == "TorchGlobalAvgPool1D":
            layers.append(L.GlobalAvgPool1D())
        elif kind == "TorchResidual":
            import copy

            body = from_torch(mod.body, dtype)  # weights set there; the layers are copied
            sc = None
            if mod.shortcut is not None:
                sc_model = from_torch(mod.shortcut, dtype)
                if len(sc_model.layers) != 1:
                    raise ValueError("from_torch: a TorchResidual shortcut must be one layer")
                sc = copy.deepcopy(sc_model.layers[0])
                sc.name = None  # named by the block
            act = None if mod.act is None else _torch_activation(mod.act)
            inner = [copy.deepcopy(la) for la in body.layers]
            for la in inner:
                la.name = None
            layers.append(L.Residual(inner, sc, act))
        elif kind in ("BatchNorm1d", "BatchNorm2d"):
            if not mod.track_running_stats or mod.running_mean is None:
                raise ValueError(f"from_torch: {kind} without running statistics "
                                 "(track_running_stats=False) is not supported")
            cls = L.BatchNorm1D if kind == "BatchNorm1d" else L.BatchNorm2D
            layer = cls(mod.num_features, eps=mod.eps, momentum=mod.momentum, affine=mod.affine)
            vals = ([mod.weight.detach().cpu().numpy(), mod.bias.detach().cpu().numpy()]
                    if mod.affine else [])
            layers.append(layer)
            weights.append((layer, vals))
            buffers.append((layer, {
                "running_mean": mod.running_mean.detach().cpu().numpy(),
                "running_var": mod.running_var.detach().cpu().numpy(),
                "num_batches_tracked": int(mod.num_batches_tracked)}))
        elif kind == "LayerNorm":
            has_bias = mod.elementwise_affine and mod.bias is not None
            layer = L.LayerNorm(tuple(mod.normalized_shape), eps=mod.eps,
                                elementwise_affine=mod.elementwise_affine, bias=has_bias)
            vals = [mod.weight.detach().cpu().numpy()] if mod.elementwise_affine else []
            if has_bias:
                vals.append(mod.bias.detach().cpu().numpy())
            layers.append(layer)
            weights.append((layer, vals))
        elif kind == "Flatten":
            if mod.start_dim != 1 or mod.end_dim != -1:
                raise ValueError("from_torch: only Flatten(start_dim=1, end_dim=-1) is supported")
            layers.append(Flatten())
        elif kind == "Dropout":
            layers.append(Dropout(mod.p))
        elif kind in _TORCH_ACTS:
            name = _torch_activation(mod)
            prev = layers[-1] if layers else None
            if name == "identity":
                continue
            if (isinstance(prev, Dense) or type(prev).__name__ == "Conv2D") and \
                    prev.activation == "identity" and name != "softmax":
                prev.activation = name  # the layer's one activation fact (name and code)
            else:
                layers.append(Activation(name))
        else:
            raise ValueError(f"from_torch: unsupported module {kind}")
    model = Sequential(layers, dtype=dtype, input_shape=input_shape)
    for layer, vals in weights:
        for i, v in enumerate(vals):
            layer.set_param(i, v)
    for layer, bufs in buffers:
        layer.set_buffers(bufs)
    return model


def to_torch(model: Sequential) -> Any:
    """A ``torch.nn.Sequential`` computing the same function as ``model`` (weights copied).

    A :class:`~fastnn.Residual` becomes a ``TorchResidual`` and a
    :class:`~fastnn.GlobalAvgPool1D` a ``TorchGlobalAvgPool1D`` (see
    :func:`torch_classes`).

    Returns
    -------
    torch.nn.Sequential
        In eval mode, with parameters of the model's dtype.
    """
    import torch
    from torch import nn

    act_mods = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh,
                "leaky_relu": lambda: nn.LeakyReLU(0.01), "elu": nn.ELU, "gelu": nn.GELU,
                "softplus": nn.Softplus, "silu": nn.SiLU, "softmax": lambda: nn.Softmax(dim=-1)}
    tdtype = torch.float32 if model.dtype == np.float32 else torch.float64
    mods: list[Any] = []
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "Dense":
            lin = nn.Linear(layer.in_features, layer.out_features, bias=layer.use_bias,
                            dtype=tdtype)
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(layer.weight.T)))
                if layer.use_bias:
                    lin.bias.copy_(torch.from_numpy(layer.bias.copy()))
            mods.append(lin)
        elif kind == "Conv2D":
            conv = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size,
                             stride=layer.stride, padding=layer.padding, bias=layer.use_bias,
                             dtype=tdtype)
            with torch.no_grad():
                conv.weight.copy_(torch.from_numpy(layer.weight.copy()))
                if layer.use_bias:
                    conv.bias.copy_(torch.from_numpy(layer.bias.copy()))
            mods.append(conv)
        elif kind == "MaxPool2D":
            mods.append(nn.MaxPool2d(layer.kernel_size, layer.stride, layer.padding))
        elif kind == "AvgPool2D":
            mods.append(nn.AvgPool2d(layer.kernel_size, layer.stride, layer.padding))
        elif kind == "GlobalAvgPool2D":
            mods.extend([nn.AdaptiveAvgPool2d(1), nn.Flatten()])
            continue
        elif kind == "Embedding":
            emb = nn.Embedding(layer.num_embeddings, layer.embedding_dim, dtype=tdtype)
            with torch.no_grad():
                emb.weight.copy_(torch.from_numpy(layer.weight.copy()))
            mods.append(emb)
        elif kind == "GlobalAvgPool1D":
            mods.append(torch_classes()["TorchGlobalAvgPool1D"]())
        elif kind == "Residual":
            body = to_torch(_Part(layer.layers, model.dtype))
            sc = None if layer.shortcut is None else to_torch(_Part([layer.shortcut],
                                                                    model.dtype))
            act = None if layer.activation == "identity" else act_mods[layer.activation]()
            mods.append(torch_classes()["TorchResidual"](body, sc, act))
            continue
        elif kind in ("BatchNorm1D", "BatchNorm2D"):
            cls = nn.BatchNorm1d if kind == "BatchNorm1D" else nn.BatchNorm2d
            bn = cls(layer.num_features, eps=layer.eps, momentum=layer.momentum,
                     affine=layer.affine, dtype=tdtype)
            with torch.no_grad():
                if layer.affine:
                    bn.weight.copy_(torch.from_numpy(layer.weight.copy()))
                    bn.bias.copy_(torch.from_numpy(layer.bias.copy()))
                bn.running_mean.copy_(torch.from_numpy(layer.running_mean.copy()))
                bn.running_var.copy_(torch.from_numpy(layer.running_var.copy()))
                bn.num_batches_tracked.fill_(layer.num_batches_tracked)
            mods.append(bn)
        elif kind == "LayerNorm":
            ln = nn.LayerNorm(layer.normalized_shape, eps=layer.eps,
                              elementwise_affine=layer.elementwise_affine, bias=layer.use_bias,
                              dtype=tdtype)
            with torch.no_grad():
                if layer.elementwise_affine:
                    ln.weight.copy_(torch.from_numpy(layer.weight.copy()))
                if layer.use_bias:
                    ln.bias.copy_(torch.from_numpy(layer.bias.copy()))
            mods.append(ln)
        elif kind == "Flatten":
            mods.append(nn.Flatten())
        elif kind == "Dropout":
            mods.append(nn.Dropout(layer.p))
        elif kind != "Activation":
            raise ValueError(f"to_torch: unsupported layer {kind}")
        act = getattr(layer, "activation", "identity")
        if act != "identity":
            mods.append(act_mods[act]())
    return nn.Sequential(*mods).eval()


def export_onnx(model: Sequential, path: str | os.PathLike, opset: int = 17) -> None:
    """Write ``model`` as an ONNX graph (inference: dropout is the identity).

    The input is named ``"input"`` with a dynamic batch axis, the output ``"output"``.
    Written atomically.  Needs the ``onnx`` package (``pip install "fastnn[onnx]"``).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from .io import atomic_write

    if model.input_shape is None:
        raise ValueError("export_onnx: the model's input shape is unknown; build it with "
                         "input_shape=... or run it on a batch first")
    elem = TensorProto.FLOAT if model.dtype == np.float32 else TensorProto.DOUBLE
    nodes, inits = [], []
    cur = "input"
    counter = [0]

    def fresh(base: str) -> str:
        counter[0] += 1
        return f"{base}_{counter[0]}"

    def const(name: str, arr: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(arr, model.dtype), name))
        return name

    def activation(x: str, act: str) -> str:
        if act == "identity":
            return x
        y = fresh(act)
        simple = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "softplus": "Softplus"}
        if act in simple:
            nodes.append(helper.make_node(simple[act], [x], [y]))
        elif act == "leaky_relu":
            nodes.append(helper.make_node("LeakyRelu", [x], [y], alpha=0.01))
        elif act == "elu":
            nodes.append(helper.make_node("Elu", [x], [y], alpha=1.0))
        elif act == "softmax":
            nodes.append(helper.make_node("Softmax", [x], [y], axis=-1))
        elif act == "silu":
            s = fresh("sig")
            nodes.append(helper.make_node("Sigmoid", [x], [s]))
            nodes.append(helper.make_node("Mul", [x, s], [y]))
        elif act == "gelu":  # x * 0.5 * (1 + erf(x / sqrt 2))
            a, e, p, h = fresh("g"), fresh("g"), fresh("g"), fresh("g")
            nodes.append(helper.make_node("Mul", [x, const(fresh("c"), np.array(2 ** -0.5))],
                                          [a]))
            nodes.append(helper.make_node("Erf", [a], [e]))
            nodes.append(helper.make_node("Add", [e, const(fresh("c"), np.array(1.0))], [p]))
            nodes.append(helper.make_node("Mul", [x, p], [h]))
            nodes.append(helper.make_node("Mul", [h, const(fresh("c"), np.array(0.5))], [y]))
        else:  # pragma: no cover - every fastnn activation is handled above
            raise ValueError(act)
        return y

    blocks: list[list[str]] = []  # per open Residual: [its input, f's output]
    for layer in _onnx_program(model.layers):
        kind = type(layer).__name__
        if kind == "_BlockBegin":
            blocks.append([cur, ""])
            continue
        if kind == "_BlockShortcut":
            blocks[-1][1] = cur
            cur = blocks[-1][0]
            continue
        if kind == "_BlockEnd":
            block_in, f_out = blocks.pop()
            y = fresh("residual_add")
            nodes.append(helper.make_node("Add", [f_out or cur, cur if f_out else block_in],
                                          [y]))
            cur = activation(y, layer.activation)
            continue
        if kind == "Embedding":
            y = fresh("embedding")
            nodes.append(helper.make_node("Gather", [const(fresh("E"), layer.weight), cur],
                                          [y], axis=0))
            cur = y
            continue
        if kind == "GlobalAvgPool1D":
            y = fresh("gap1d")
            if opset >= 18:
                axes = fresh("axes")
                inits.append(numpy_helper.from_array(np.array([1], np.int64), axes))
                nodes.append(helper.make_node("ReduceMean", [cur, axes], [y], keepdims=0))
            else:
                nodes.append(helper.make_node("ReduceMean", [cur], [y], axes=[1], keepdims=0))
            cur = y
            continue
        if kind == "Dense":
            y = fresh("dense")
            ins = [cur, const(fresh("W"), layer.weight)]
            if layer.use_bias:
                ins.append(const(fresh("b"), layer.bias))
            nodes.append(helper.make_node("Gemm", ins, [y]))
            cur = activation(y, layer.activation)
        elif kind == "Conv2D":
            y = fresh("conv")
            ins = [cur, const(fresh("W"), layer.weight)]
            if layer.use_bias:
                ins.append(const(fresh("b"), layer.bias))
            ph, pw = layer.padding
            nodes.append(helper.make_node("Conv", ins, [y], kernel_shape=list(layer.kernel_size),
                                          strides=list(layer.stride), pads=[ph, pw, ph, pw]))
            cur = activation(y, layer.activation)
        elif kind in ("MaxPool2D", "AvgPool2D"):
            y = fresh("pool")
            ph, pw = layer.padding
            attrs = {"kernel_shape": list(layer.kernel_size), "strides": list(layer.stride),
                     "pads": [ph, pw, ph, pw]}
            if kind == "AvgPool2D":
                attrs["count_include_pad"] = 1
            nodes.append(helper.make_node("MaxPool" if kind == "MaxPool2D" else "AveragePool",
                                          [cur], [y], **attrs))
            cur = y
        elif kind == "GlobalAvgPool2D":
            y, f = fresh("gap"), fresh("flat")
            nodes.append(helper.make_node("GlobalAveragePool", [cur], [y]))
            nodes.append(helper.make_node("Flatten", [y], [f], axis=1))
            cur = f
        elif kind == "Flatten":
            y = fresh("flatten")
            nodes.append(helper.make_node("Flatten", [cur], [y], axis=1))
            cur = y
        elif kind in ("BatchNorm1D", "BatchNorm2D"):  # inference: the running statistics
            y, c = fresh("bn"), layer.num_features
            scale = layer.weight if layer.affine else np.ones(c)
            shift = layer.bias if layer.affine else np.zeros(c)
            nodes.append(helper.make_node(
                "BatchNormalization",
                [cur, const(fresh("scale"), scale), const(fresh("B"), shift),
                 const(fresh("mean"), layer.running_mean), const(fresh("var"), layer.running_var)],
                [y], epsilon=layer.eps))
            cur = y
        elif kind == "LayerNorm":
            if opset < 17:
                raise ValueError("export_onnx: LayerNorm needs opset >= 17 (LayerNormalization)")
            y = fresh("ln")
            shp = layer.normalized_shape
            ins = [cur, const(fresh("scale"), layer.weight if layer.elementwise_affine
                              else np.ones(shp))]
            if layer.use_bias:
                ins.append(const(fresh("B"), layer.bias))
            nodes.append(helper.make_node("LayerNormalization", ins, [y], axis=-len(shp),
                                          epsilon=layer.eps))
            cur = y
        elif kind == "Activation":
            cur = activation(cur, layer.activation)
        elif kind == "Dropout":
            continue
        else:
            raise ValueError(f"export_onnx: unsupported layer {kind}")
    nodes.append(helper.make_node("Identity", [cur], ["output"]))
    graph = helper.make_graph(
        nodes, model.name,
        [helper.make_tensor_value_info("input", TensorProto.INT64
                                       if model.input_dtype.kind == "i" else elem,
                                       ["batch", *model.input_shape])],
        [helper.make_tensor_value_info("output", elem,
                                       ["batch", *(model.output_shape or ())])],
        initializer=inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="fastnn")
    onnx.checker.check_model(proto)
    data = proto.SerializeToString()
    atomic_write(path, lambda f: f.write(data))


class _BlockBegin:
    """Marker of :func:`_onnx_program`: a Residual's layers follow."""


class _BlockShortcut:
    """Marker: the shortcut's layer follows (its input is the block's input)."""


class _BlockEnd:
    """Marker: add f's output and the shortcut's (or the block's input), then activate."""

    def __init__(self, activation: str) -> None:
        self.activation = activation


def _onnx_program(layers: list[Layer]) -> list[Any]:
    """The layers in export order, each Residual expanded into markers and its layers."""
    out: list[Any] = []
    for layer in layers:
        if type(layer).__name__ == "Residual":
            out.append(_BlockBegin())
            out.extend(_onnx_program(layer.layers))
            if layer.shortcut is not None:
                out.append(_BlockShortcut())
                out.extend(_onnx_program([layer.shortcut]))
            out.append(_BlockEnd(layer.activation))
        else:
            out.append(layer)
    return out
