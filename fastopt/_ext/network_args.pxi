# The checks of Network's arguments (included into kernels.pyx before
# network.pxi): the row count, the layer lists, the loss against the output,
# and each layer's weights, biases and gradient arrays, bound once.

cdef Py_ssize_t _row_count(object rows) except -1:
    r = _int_in(rows, "rows", 1)  # a Python int: compared before any C conversion
    if r > _BLAS_DIM_MAX:
        raise ValueError(f"rows must be at most {_BLAS_DIM_MAX} (BLAS takes dimensions "
                         f"as C ints), got {rows!r}")
    return r


_LIST_NAMES = ("weights", "biases", "weight_grads", "bias_grads")


cdef Py_ssize_t _layer_count(tuple lists) except -1:
    """The number of layers: every list (weights, biases and their
    gradients) holds one array per layer."""
    for name, value in zip(_LIST_NAMES, lists):
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"{name} must be a list or tuple of float32 arrays, "
                            f"got {_show(value)}")
    cdef Py_ssize_t depth = len(lists[0])
    if depth < 1:
        raise ValueError("weights must hold at least one layer's matrix")
    for name, value in zip(_LIST_NAMES, lists):
        if len(value) != depth:
            raise ValueError(f"{name} has {len(value)} arrays, weights has {depth}; "
                             f"every list needs one per layer")
    return depth


cdef object _loss_policy(object loss, object output):
    """The loss table's entry for ``loss`` (None for None; a
    ``objectives.Loss`` as it is), checked against the output activation."""
    if loss is None:
        return None
    policy = loss if isinstance(loss, objectives.Loss) else objectives.get(loss, allow_none=True)
    objectives.check_output(policy, output)
    return policy


cdef tuple _bind_layer(Py_ssize_t k, tuple lists, Py_ssize_t fan_in_expected):
    """Layer k's (W, b, dW, db), checked against each other and against the
    previous layer's outputs (``fan_in_expected``, or -1 for the first)."""
    cdef cnp.ndarray W = _matrix(lists[0][k], f"weights[{k}]", False)
    cdef Py_ssize_t fan_in = W.shape[0], fan_out = W.shape[1]
    if fan_in_expected >= 0 and fan_in != fan_in_expected:
        raise ValueError(f"weights[{k}] has {fan_in} rows, but layer {k - 1} has "
                         f"{fan_in_expected} outputs")
    if fan_in < 1 or fan_out < 1:
        raise ValueError(f"weights[{k}] has shape {(<object>W).shape}; every layer "
                         f"needs at least one input and one output")
    cdef cnp.ndarray b = _array(lists[1][k], f"biases[{k}]", False)
    cdef cnp.ndarray dW = _matrix(lists[2][k], f"weight_grads[{k}]", True)
    cdef cnp.ndarray db = _array(lists[3][k], f"bias_grads[{k}]", True)
    if cnp.PyArray_SIZE(b) != fan_out or cnp.PyArray_SIZE(db) != fan_out:
        raise ValueError(f"biases[{k}] and bias_grads[{k}] must have {fan_out} "
                         f"elements (the columns of weights[{k}]), got "
                         f"{cnp.PyArray_SIZE(b)} and {cnp.PyArray_SIZE(db)}")
    if (<object>dW).shape != (<object>W).shape:
        raise ValueError(f"weight_grads[{k}] has shape {(<object>dW).shape}, "
                         f"weights[{k}] {(<object>W).shape}")
    return (W, b, dW, db)


cdef int _check_written_apart(tuple bound) except -1:
    """The gradients are written: none may share memory with another
    gradient or with any weight or bias (weights may share with weights)."""
    cdef list arrays = [], names = []
    cdef Py_ssize_t k, i, j
    for k in range(len(bound)):
        arrays += [bound[k][2], bound[k][3]]
        names += [f"weight_grads[{k}]", f"bias_grads[{k}]"]
    _disjoint(tuple(arrays), tuple(names))
    for k in range(len(bound)):
        for j, name in ((0, f"weights[{k}]"), (1, f"biases[{k}]")):
            for i in range(len(arrays)):
                if _overlap(arrays[i], bound[k][j]):
                    raise _sharing(names[i], name)
    return 0


cdef tuple _hidden_activations(object activation, Py_ssize_t depth):
    """The hidden layers' activation codes: one name for all of them, or a
    list or tuple of one name per hidden layer (``depth - 1``)."""
    if isinstance(activation, str):
        return (_activation(activation),) * (depth - 1)
    if not isinstance(activation, (list, tuple)):
        raise TypeError(f"activation must be a name or a list of one name per hidden "
                        f"layer, got {_show(activation)}")
    if len(activation) != depth - 1:
        raise ValueError(f"activation lists {len(activation)} names, the network has "
                         f"{depth - 1} hidden layers")
    return tuple(_activation(a) for a in activation)


cdef tuple _dropout_rates(object dropout, Py_ssize_t depth):
    """The layers' dropout rates: None (none), or one rate in [0, 1) per
    layer, the output layer's 0."""
    if dropout is None:
        return (0.0,) * depth
    if not isinstance(dropout, (list, tuple)):
        raise TypeError(f"dropout must be None or a list of one rate per layer, "
                        f"got {_show(dropout)}")
    if len(dropout) != depth:
        raise ValueError(f"dropout lists {len(dropout)} rates, the network has {depth} layers")
    cdef list rates = []
    for k in range(depth):
        rate = dropout[k]
        if isinstance(rate, _BOOL_TYPES) or not isinstance(rate, (float, int)):
            raise TypeError(f"dropout[{k}] must be a number, got {_show(rate)}")
        if not 0 <= rate < 1:
            raise ValueError(f"dropout[{k}] must be in [0, 1), got {rate!r}")
        rates.append(float(rate))
    if rates[depth - 1]:
        raise ValueError("the output layer takes no dropout (dropout[-1] must be 0)")
    return tuple(rates)
