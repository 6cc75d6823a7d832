"""flatten_: a model's parameters and gradients in one aligned buffer each."""

import torch

from fastopt import _placement

# The attribute a flattened parameter carries: its view of the flat gradient buffer.
GRAD_VIEW = "_fastopt_grad_view"


def aligned_zeros(n, fill=0.0, dtype=torch.float32):
    """A 1-D CPU tensor of ``n`` elements of ``dtype`` filled with ``fill``,
    placed as fastopt places its NumPy buffers (``fastopt._placement``): its
    first element 64-byte aligned (the kernels' widest vector load) and,
    from 1 MiB up, coloured off the DRAM banks of the buffers before it."""
    size = torch.empty(0, dtype=dtype).element_size()
    nbytes = n * size
    base = torch.empty(n + -(-_placement.padding(nbytes) // size), dtype=dtype)
    skip = _placement.skip(base.data_ptr(), nbytes) // size
    flat = base[skip:skip + n]
    flat.fill_(fill)
    return flat


def grad_view(p):
    """The flat-buffer gradient view ``flatten_`` gave ``p``, or None (also
    when ``p`` has been replaced by a tensor of another shape since)."""
    view = getattr(p, GRAD_VIEW, None)
    if view is None or view.shape != p.shape:
        return None
    return view


def restore_grad_view(p, view):
    """Make ``view`` (``grad_view(p)``) ``p``'s gradient again, holding the
    values of the ``.grad`` that replaced it (zeros if that is None): what
    a backward pass after ``zero_grad(set_to_none=True)`` leaves outside the
    flat buffer comes back into it."""
    with torch.no_grad():
        if p.grad is None:
            view.zero_()
        else:
            view.copy_(p.grad)
    p.grad = view


class FlatBuffers:
    """What :func:`flatten_` made: ``params`` and ``grads``, two 1-D tensors
    of the parameters' dtype whose consecutive slices are the parameters' data and gradients
    (in the order of ``names``)."""

    def __init__(self, params, grads, names):
        self.params = params
        self.grads = grads
        self.names = names

    def __repr__(self):
        return (f"<fastopt.torch.FlatBuffers: {len(self.names)} tensors, "
                f"{self.params.numel()} elements>")


def _collect(module_or_params):
    """(name, parameter) pairs, each parameter once (tied weights share one slot)."""
    if isinstance(module_or_params, torch.nn.Module):
        pairs = list(module_or_params.named_parameters())
    elif isinstance(module_or_params, torch.Tensor):
        raise TypeError("flatten_ takes an nn.Module or an iterable of parameters, "
                        "got a single Tensor (wrap it in a list)")
    else:
        pairs = [(f"parameter {i}", p) for i, p in enumerate(module_or_params)]
    seen, out = set(), []
    for name, p in pairs:
        if not isinstance(p, torch.Tensor):
            raise TypeError(f"flatten_: {name} must be a torch.Tensor, got {type(p).__name__}")
        if id(p) not in seen:
            seen.add(id(p))
            out.append((name, p))
    if not out:
        raise ValueError("flatten_: there are no parameters to flatten")
    return out


#: the parameter dtypes fastopt.torch's Adam and AdamW take (float32 master weights)
LOW_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def check_tensor(name, p, dtypes=(torch.float32,)):
    """TypeError naming ``name`` unless ``p`` is a dense CPU tensor of one of
    ``dtypes``."""
    if p.device.type != "cpu":
        raise TypeError(f"{name} is on {p.device}; fastopt.torch updates CPU tensors")
    if p.dtype not in dtypes:
        names = " or ".join(str(d).replace("torch.", "") for d in dtypes)
        more = "" if len(dtypes) > 1 else " (bfloat16 and float16 parameters: Adam, AdamW)"
        raise TypeError(f"{name} has dtype {p.dtype}; fastopt.torch needs {names}{more}")
    if p.layout != torch.strided:
        raise TypeError(f"{name} has layout {p.layout}; it must be dense")


def _check(name, p, dtype):
    check_tensor(f"flatten_: {name}", p, LOW_DTYPES)
    if p.dtype != dtype:
        raise TypeError(f"flatten_: {name} has dtype {p.dtype}, the first parameter {dtype}; "
                        "the buffers have one dtype: flatten_ each dtype's parameters "
                        "separately (flatten_(list_of_parameters))")
    if not p.is_leaf:
        raise ValueError(f"flatten_: {name} is not a leaf tensor")
    if p.grad is not None and p.grad.layout != torch.strided:
        raise TypeError(f"flatten_: the gradient of {name} is sparse")


@torch.no_grad()
def flatten_(module_or_params):
    """Move parameters and their gradients into one buffer each, in place.

    ``module_or_params`` is an ``nn.Module`` (its ``parameters()``) or an
    iterable of parameters: CPU, dense leaf tensors, all float32, all
    bfloat16 or all float16 (the dtypes fastopt.torch's Adam and AdamW take;
    a model that mixes dtypes is rejected: call ``flatten_`` once per dtype,
    on a list of its parameters).  Two buffers of the total size and the
    parameters' dtype are allocated, 64-byte aligned; each parameter's values
    are copied into its slice of the first and ``p.data`` becomes that slice
    (the ``Parameter`` object stays the same, so optimizers, ``state_dict``
    and hooks still refer to it).  ``p.grad`` becomes the matching slice of
    the second buffer, holding the old gradient or zeros.  Parameters are
    laid out in order, without gaps, so a fastopt.torch optimizer updates a
    whole flattened group in one kernel call.

    Gradients: a backward accumulates into existing ``.grad`` tensors in
    place, so the views stay in use as long as they are not replaced.
    fastopt.torch optimizers' ``zero_grad()`` zeroes the flat gradient
    buffer in place and keeps the views even with ``set_to_none=True`` (a
    flattened parameter that gets no gradient from the next backward then
    has a zero gradient, as with ``set_to_none=False``).  If something else
    replaces a ``.grad`` (``model.zero_grad()`` sets it to None and the next
    backward allocates a fresh one), the optimizer's ``step()`` copies it into
    the flat buffer and restores the view: the result is the same, at the
    cost of the copy.

    Call it before creating the optimizer, or before its first ``step()``.
    Returns a :class:`FlatBuffers` holding the two buffers.
    """
    pairs = _collect(module_or_params)
    dtype = pairs[0][1].dtype
    for name, p in pairs:
        _check(name, p, dtype)
    total = sum(p.numel() for _, p in pairs)
    flat_p = aligned_zeros(total, dtype=dtype)
    flat_g = aligned_zeros(total, dtype=dtype)
    offset = 0
    for _, p in pairs:
        n = p.numel()
        view_p = flat_p[offset:offset + n].view(p.shape)
        view_g = flat_g[offset:offset + n].view(p.shape)
        view_p.copy_(p)
        if p.grad is not None:
            view_g.copy_(p.grad)
        p.data = view_p
        p.grad = view_g
        setattr(p, GRAD_VIEW, view_g)
        offset += n
    return FlatBuffers(flat_p, flat_g, [name for name, _ in pairs])
