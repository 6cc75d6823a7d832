# A fully connected network's forward and backward passes in C (included
# into _kernels.pyx): the training step of fastopt.MLP with no Python
# between its matrix products.  Each piece is the same core the checked
# layer and loss kernels run (_sgemm, _bias_act, _xent, ...), so a pass here
# gives the bits those kernels give when called one by one.

from cpython.mem cimport PyMem_Calloc, PyMem_Free
from libc.string cimport memcpy

# The loss policy -- which names, the output activation each needs, how the
# mean divides, how accuracy counts -- is one table, fastopt._objectives
# (pure Python, importing nothing); this pass takes that table's codes and
# returns sums and counts.
from fastopt import _objectives as objectives

cdef enum LossKind:         # objectives.SPARSE_CE, CATEGORICAL_CE, BCE, MSE
    LOSS_NONE = 0
    LOSS_SPARSE_CE = 1
    LOSS_CATEGORICAL_CE = 2
    LOSS_BCE = 3
    LOSS_MSE = 4

cdef enum AccuracyRule:     # objectives.ARGMAX_LABEL, ARGMAX_ONE_HOT, THRESHOLD
    ACC_ARGMAX_LABEL = 0
    ACC_ARGMAX_ONE_HOT = 1
    ACC_THRESHOLD = 2

cdef enum:                  # the other metrics: objectives.ABS_ERROR, SQUARED_ERROR
    METRIC_ABS_ERROR = 3
    METRIC_SQUARED_ERROR = 4

# The table names these codes too; a build whose two lists disagree must not load.
if ((objectives.SPARSE_CE, objectives.CATEGORICAL_CE, objectives.BCE, objectives.MSE,
     objectives.ARGMAX_LABEL, objectives.ARGMAX_ONE_HOT, objectives.THRESHOLD,
     objectives.ABS_ERROR, objectives.SQUARED_ERROR)
        != (LOSS_SPARSE_CE, LOSS_CATEGORICAL_CE, LOSS_BCE, LOSS_MSE,
            ACC_ARGMAX_LABEL, ACC_ARGMAX_ONE_HOT, ACC_THRESHOLD,
            METRIC_ABS_ERROR, METRIC_SQUARED_ERROR)):
    raise ImportError("the loss codes of fastopt._objectives and network.pxi disagree")


cdef struct _Layer:
    Py_ssize_t fan_in, fan_out
    Activation act       # this layer's activation (the output's: see Network.output)
    float rate           # the dropout rate applied to this layer's activations (0: none)
    float *out           # (rows, fan_out): the dropped-out activations when rate > 0, owned
    const float *W       # (fan_in, fan_out), the caller's
    const float *b       # (fan_out,), the caller's
    float *dW            # like W, the caller's
    float *db            # like b, the caller's
    float *a             # (rows, fan_out): this layer's activations, owned
    float *d             # (rows, fan_out): d loss / d pre-activation, owned


cdef class Network:
    """The forward and backward passes of a fully connected network, in C.

    ``Network(weights, biases, weight_grads, bias_grads, *, rows,
    activation='relu', output='softmax', loss=None)`` binds layer k's
    weights ``(fan_in, fan_out)``, bias ``(fan_out,)`` and their gradient
    arrays (float32, C-contiguous; the gradients writable and sharing memory
    with nothing else), checked once, and allocates activation buffers for
    up to ``rows`` samples.  Each call then runs a whole pass without the GIL
    and without Python between the layers.  Layer k computes
    ``a_k = act_k(a_{k-1} @ W_k + b_k)``: ``activation`` is the hidden
    layers' activation, one name for all or a sequence of one per hidden
    layer, and ``output`` the last layer's.  ``dropout``: None, or one rate
    in [0, 1) per layer (the last one's 0), applied to that layer's
    activations in :meth:`gradients` only (as Keras' Dropout after a Dense
    layer; off in :meth:`evaluate` and :meth:`forward`), its masks keyed by
    ``seed`` (see :meth:`reseed`).  ``metrics``: codes of
    ``fastopt._objectives.METRIC_CODES`` whose sums each pass also computes
    (:attr:`metric_sums`).

    ``loss`` (a name, or a ``fastopt._objectives.Loss`` carrying label
    smoothing or taking the logits of a linear output) is
    'sparse_categorical_crossentropy' (int64 labels of shape
    (N,)), 'categorical_crossentropy' (float32 targets (N, outputs)) -- both
    need ``output='softmax'`` and are computed from the logits, fused with
    the softmax --, 'binary_crossentropy' (``output='sigmoid'``, from the
    logits), 'mse' or 'mean_squared_error' (on the output activation), or
    None for a network that only predicts.  Those names, the output each
    requires, how its mean divides and how accuracy is counted are the
    one table, :mod:`fastopt._objectives`; this pass runs the
    codes it gives.  The arithmetic is that of :func:`gemm_`,
    :func:`bias_activation_`, :func:`softmax_cross_entropy`,
    :func:`binary_cross_entropy`, :func:`mean_squared_error`,
    :func:`activation_backward_`, :func:`bias_grad` and :func:`count_correct`
    called layer by layer (the same compiled code), so the results are
    bit-identical to that composition.

    On every call the bound arrays are checked, in C, to still be the memory
    they were bound to (as :class:`BoundUpdate` does).  Non-finite inputs are
    not rejected: they propagate into the loss and the gradients.  Calls
    share the network's buffers and write the same gradient arrays, so one
    Network serves one thread at a time.
    """
    cdef _Layer *layers
    cdef int depth
    cdef Py_ssize_t max_rows, inputs, outputs
    cdef Activation output
    cdef LossKind loss
    cdef double smoothing        # label smoothing of the cross-entropies
    cdef bint dropout            # some layer has a dropout rate
    cdef unsigned long long seed, step  # the dropout masks' key: (seed, step, layer, row, column)
    cdef int n_metrics
    cdef int metric_codes[8]     # objectives' metric codes, computed in each pass ...
    cdef double metric_sum[8]    # ... their sums over the last pass's samples
    cdef AccuracyRule accuracy
    cdef Py_ssize_t terms        # loss terms per sample: the mean divides by n * terms
    cdef bint fused              # the loss takes the output layer's logits
    cdef tuple bound             # per layer (W, b, dW, db): the caller's arrays, kept alive
    cdef tuple owned             # the buffers the layers' a and d point into
    cdef cnp.ndarray x_rows      # gathered inputs (rows, inputs)
    cdef cnp.ndarray label_rows  # gathered int64 labels (rows,)
    cdef cnp.ndarray target_rows # gathered float32 targets (rows, outputs)

    def __cinit__(self):
        self.layers = NULL
        self.depth = 0
        self.bound = ()

    def __dealloc__(self):
        PyMem_Free(self.layers)

    def __init__(self, weights, biases, weight_grads, bias_grads, *, rows,
                 activation="relu", output="softmax", loss=None, dropout=None, seed=0,
                 metrics=()):
        if self.layers != NULL:
            raise TypeError("a Network is initialised once")
        cdef tuple lists = (weights, biases, weight_grads, bias_grads)
        cdef Py_ssize_t depth = _layer_count(lists), k
        self.max_rows = _row_count(rows)
        hidden = _hidden_activations(activation, depth)
        rates = _dropout_rates(dropout, depth)
        self.output = _activation(output)
        policy = _loss_policy(loss, output)
        self._set_metrics(metrics, policy)
        self.reseed(seed)
        cdef list bound = []
        for k in range(depth):
            bound.append(_bind_layer(k, lists, (<cnp.ndarray>bound[k - 1][0]).shape[1]
                                     if k else -1))
        _check_written_apart(tuple(bound))
        self.inputs = (<cnp.ndarray>bound[0][0]).shape[0]
        self.outputs = (<cnp.ndarray>bound[depth - 1][0]).shape[1]
        self._set_loss(policy)
        self._allocate(tuple(bound), hidden, rates)

    cdef int _set_loss(self, object policy) except -1:
        """The codes of the loss table's entry ``policy`` (None: no loss)."""
        if policy is None:
            self.loss = LOSS_NONE
            return 0
        self.loss = <LossKind><int>policy.code
        self.fused = policy.from_logits
        self.smoothing = policy.smoothing
        self.terms = objectives.terms_per_sample(policy, self.outputs)
        self.accuracy = <AccuracyRule><int>objectives.accuracy_rule(policy, self.outputs)
        return 0

    cdef int _set_metrics(self, object metrics, object policy) except -1:
        """The metric codes (objectives' METRIC_CODES) each pass computes."""
        if not isinstance(metrics, (list, tuple)) or len(metrics) > 8:
            raise TypeError(f"metrics must be a list or tuple of at most 8 metric codes, "
                            f"got {_show(metrics)}")
        if metrics and policy is None:
            raise ValueError("metrics need a loss (they are computed in the training pass)")
        cdef int k
        for k in range(len(metrics)):
            code = metrics[k]
            if not _is_int(code) or code not in objectives.METRIC_CODES:
                raise (ValueError if _is_int(code) else TypeError)(
                    f"metrics[{k}] must be one of {objectives.METRIC_CODES}, got {code!r}")
            if (code == ACC_ARGMAX_LABEL) != bool(policy.labels):
                raise ValueError(f"metrics[{k}] = {code} does not suit loss {policy.name!r}")
            self.metric_codes[k] = code
            self.metric_sum[k] = 0.0
        self.n_metrics = len(metrics)
        return 0

    def reseed(self, seed):
        """Key the dropout masks of the following calls of :meth:`gradients`
        by ``seed`` (an int in [0, 2**64)), counting their steps from 0."""
        self.seed = _int_in(seed, "seed", 0, maximum=2**64 - 1)
        self.step = 0

    @property
    def metric_sums(self):
        """The sums of the metrics over the last pass's samples, one per
        code of ``metrics``: correct predictions (accuracies), summed squared
        or absolute errors over every output (mse, mae)."""
        return tuple(self.metric_sum[k] for k in range(self.n_metrics))

    cdef int _allocate(self, tuple bound, tuple hidden, tuple rates) except -1:
        """The activation buffers, the gather buffers and the layer table;
        the layer table is set last, so a Network whose __init__ failed has
        no layers and refuses every call."""
        cdef Py_ssize_t k, depth = len(bound)
        cdef list owned = []
        for k in range(depth):
            fan_out = (<cnp.ndarray>bound[k][0]).shape[1]
            owned += [np.empty((self.max_rows, fan_out), np.float32),
                      np.empty((self.max_rows, fan_out), np.float32),
                      np.empty((self.max_rows if rates[k] else 0, fan_out), np.float32)]
        self.x_rows = np.empty((self.max_rows, self.inputs), np.float32)
        self.label_rows = np.empty(self.max_rows, np.int64)
        self.target_rows = np.empty((self.max_rows, self.outputs), np.float32)
        cdef _Layer *layers = <_Layer *>PyMem_Calloc(depth, sizeof(_Layer))
        if layers == NULL:
            raise MemoryError("no memory for the network's layer table")
        cdef cnp.ndarray W, b, dW, db
        for k in range(depth):
            W, b, dW, db = bound[k]
            layers[k].fan_in = W.shape[0]
            layers[k].fan_out = W.shape[1]
            layers[k].W = <const float *>cnp.PyArray_DATA(W)
            layers[k].b = <const float *>cnp.PyArray_DATA(b)
            layers[k].dW = _f32(dW)
            layers[k].db = _f32(db)
            layers[k].a = _f32(owned[3 * k])
            layers[k].d = _f32(owned[3 * k + 1])
            layers[k].act = self.output if k == depth - 1 else <Activation><int>hidden[k]
            layers[k].rate = rates[k]
            layers[k].out = _f32(owned[3 * k + 2]) if rates[k] else layers[k].a
            self.dropout = self.dropout or rates[k] > 0
        self.bound = bound
        self.owned = tuple(owned)
        self.depth = depth
        self.layers = layers
        return 0

    cdef int _check_bound(self) except -1:
        if self.layers == NULL:
            raise TypeError("this Network was not initialised")
        cdef Py_ssize_t k
        cdef _Layer *L
        cdef tuple arrays
        for k in range(self.depth):
            L = &self.layers[k]
            arrays = self.bound[k]
            if not (_unchanged(arrays[0], L.W, L.fan_in * L.fan_out, False)
                    and _unchanged(arrays[1], L.b, L.fan_out, False)
                    and _unchanged(arrays[2], L.dW, L.fan_in * L.fan_out, True)
                    and _unchanged(arrays[3], L.db, L.fan_out, True)):
                raise ValueError(f"the arrays of layer {k} are no longer the native float32, "
                                 f"C-contiguous memory this Network was bound to (resized, "
                                 f"re-typed or made read-only since); make a new Network")
        return 0

    cdef cnp.ndarray _samples(self, object x):
        """``x`` checked: float32 (N, inputs), C-contiguous, sharing no memory
        with the arrays a pass writes."""
        cdef cnp.ndarray xm = _matrix(x, "x", False)
        if xm.shape[1] != self.inputs:
            raise ValueError(f"x must have {self.inputs} columns (the network's inputs), "
                             f"got shape {(<object>xm).shape}")
        self._apart(xm, "x", False)
        return xm

    cdef int _apart(self, cnp.ndarray a, str name, bint weights_too) except -1:
        """ValueError if ``a`` shares memory with a gradient array (or, with
        ``weights_too``, a weight or bias)."""
        cdef Py_ssize_t k, j
        for k in range(self.depth):
            for j in range(0 if weights_too else 2, 4):
                if _overlap(a, self.bound[k][j]):
                    raise ValueError(f"{name} shares memory with "
                                     f"{('weights', 'biases', 'weight_grads', 'bias_grads')[j]}"
                                     f"[{k}], which this Network "
                                     f"{'writes' if j >= 2 else 'reads'}")
        return 0

    cdef int _rows_of(self, cnp.ndarray xm, object y, object index, const float **x_out,
                      const long long **labels, const float **targets,
                      Py_ssize_t *n_out) except -1:
        """Check ``y`` and ``index``; point at the rows of the batch (gathered
        into this network's buffers when ``index`` is given)."""
        if self.loss == LOSS_NONE:
            raise TypeError("this Network has no loss (loss=None): it can only predict")
        cdef Py_ssize_t N = xm.shape[0], n
        x_out[0] = <const float *>cnp.PyArray_DATA(xm)
        labels[0] = NULL
        targets[0] = NULL
        if self.loss == LOSS_SPARSE_CE:
            self._labels(y, N, labels)
        else:
            self._targets(y, N, targets)
        n = self._batch_rows(N, index)
        if index is not None:
            self._gather(<cnp.ndarray>index, N, n, x_out, labels, targets)
        if n == 0:
            raise ValueError("the batch holds no samples")
        self._check_batch_targets(n, labels[0], targets[0])
        n_out[0] = n
        return 0

    cdef int _labels(self, object y, Py_ssize_t N, const long long **out) except -1:
        """Point ``out`` at ``y``'s int64 labels, checked to be one per sample."""
        if not _is_int64_vector(y):
            got = f"{y.dtype} of shape {y.shape}" if cnp.PyArray_Check(y) else _show(y)
            raise TypeError(f"y must be a C-contiguous native int64 array of labels, "
                            f"got {got}")
        cdef cnp.ndarray ym = <cnp.ndarray>y
        self._apart(ym, "y", False)
        if ym.shape[0] != N:
            raise ValueError(f"y has {ym.shape[0]} labels, x has {N} samples")
        out[0] = <const long long *>cnp.PyArray_DATA(ym)
        return 0

    cdef int _targets(self, object y, Py_ssize_t N, const float **out) except -1:
        """Point ``out`` at ``y``'s float32 targets, checked to be (N, outputs)."""
        cdef cnp.ndarray ym = _matrix(y, "y", False)
        if ym.shape[0] != N or ym.shape[1] != self.outputs:
            raise ValueError(f"y must have shape ({N}, {self.outputs}), got "
                             f"{(<object>ym).shape}")
        self._apart(ym, "y", False)
        out[0] = <const float *>cnp.PyArray_DATA(ym)
        return 0

    cdef Py_ssize_t _batch_rows(self, Py_ssize_t N, object index) except -1:
        """The batch's sample count: all N, or as many as ``index`` selects."""
        if index is None:
            if N > self.max_rows:
                raise ValueError(f"x has {N} samples, more than this Network's "
                                 f"rows={self.max_rows}")
            return N
        if not _is_int64_vector(index):
            raise TypeError("index must be a 1-D C-contiguous native int64 array")
        cdef Py_ssize_t n = (<cnp.ndarray>index).shape[0]
        if n > self.max_rows:
            raise ValueError(f"index selects {n} samples, more than this Network's "
                             f"rows={self.max_rows}")
        return n

    cdef int _gather(self, cnp.ndarray index, Py_ssize_t N, Py_ssize_t n, const float **X,
                     const long long **Y, const float **T) except -1:
        """Copy the rows ``index`` of the inputs and of the labels (if ``Y``
        points at some) or targets into this network's buffers, and point
        there."""
        cdef const long long *I = <const long long *>cnp.PyArray_DATA(index)
        cdef Py_ssize_t r, i, bad = -1, D = self.inputs, C = self.outputs
        cdef const float *Xs = X[0]
        cdef const long long *Ys = Y[0]
        cdef const float *Ts = T[0]
        cdef float *Xg = _f32(self.x_rows)
        cdef long long *Yg = <long long *>cnp.PyArray_DATA(self.label_rows)
        cdef float *Tg = _f32(self.target_rows)
        with nogil:
            for r in range(n):
                i = I[r]
                if i < 0 or i >= N:
                    bad = r
                    break
                memcpy(Xg + r * D, Xs + i * D, D * sizeof(float))
                if Ys != NULL:
                    Yg[r] = Ys[i]
                else:
                    memcpy(Tg + r * C, Ts + i * C, C * sizeof(float))
        if bad >= 0:
            raise ValueError(f"index[{bad}] = {I[bad]} is out of range for {N} samples")
        X[0] = Xg
        if Ys != NULL:
            Y[0] = Yg
        else:
            T[0] = Tg
        return 0

    cdef int _check_batch_targets(self, Py_ssize_t n, const long long *Y,
                                  const float *T) except -1:
        """ValueError for a label outside [0, outputs) or a non-finite target."""
        cdef Py_ssize_t r, C = self.outputs
        cdef fo_nonfinite_args scan
        if Y != NULL:
            for r in range(n):
                if Y[r] < 0 or Y[r] >= C:
                    raise ValueError(f"label {Y[r]} (batch row {r}) is not a class label in "
                                     f"[0, {C})")
            return 0
        scan.x = T
        scan.fmt = 0  # float32
        if fo_run(fo_active.nonfinite, &scan, n * C):
            raise ValueError("y (the targets of this batch) holds nan or inf")
        return 0

    cdef void _forward(self, const float *x, Py_ssize_t n, Activation last,
                       bint train) noexcept nogil:
        """The layers over ``n`` rows of ``x``; with ``train``, each layer's
        dropout (its ``out``) feeds the next layer."""
        cdef int k
        cdef _Layer *L
        cdef const float *a = x
        for k in range(self.depth):
            L = &self.layers[k]
            _sgemm(False, False, n, L.fan_out, L.fan_in, a, L.fan_in, L.W, L.fan_out, L.a)
            _bias_act(L.a, L.b, n, L.fan_out, L.act if k < self.depth - 1 else last)
            if train and L.rate > 0:
                _dropout(L.a, L.out, n, L.fan_out, L.rate, self.seed, self.step, k)
                a = L.out
            else:
                a = L.a

    cdef int _loss(self, Py_ssize_t n, Py_ssize_t mean_rows, const long long *labels,
                   const float *targets, bint backward, double *total,
                   Py_ssize_t *correct) noexcept nogil:
        """Loss (summed) and correct count of the last forward pass; with
        ``backward`` the gradient of the loss summed over the ``n`` rows and
        divided by ``mean_rows`` (x the terms per sample) into the last
        layer's d.  0, or -1 if out of memory."""
        cdef _Layer *L = &self.layers[self.depth - 1]
        cdef Py_ssize_t C = L.fan_out
        cdef float *G = L.d if backward else NULL
        cdef double count = mean_rows * self.terms
        if self.accuracy == ACC_ARGMAX_LABEL:
            correct[0] = _correct_sparse(L.a, labels, n, C)
        elif self.accuracy == ACC_THRESHOLD:
            correct[0] = _correct_binary(L.a, targets, n * C, self._output_from_logits())
        else:
            correct[0] = _correct_categorical(L.a, targets, n, C)
        if self.loss == LOSS_SPARSE_CE or self.loss == LOSS_CATEGORICAL_CE:
            # labels were checked to be in [0, C): -1 is never ignored
            self._metrics(n, labels, targets)
            return _xent(L.a, labels, targets, G, NULL, n, C, -1, self.smoothing,
                         1.0 / count if backward else 1.0, total)
        self._metrics(n, labels, targets)
        if self.loss == LOSS_BCE:
            total[0] = _bce(L.a, targets, G, NULL, n * C, True, 1.0 / count if backward else 1.0,
                            self.smoothing)
            return 0
        total[0] = _mse(L.a, targets, G, NULL, n * C, 2.0 / count if backward else 2.0)
        if backward:
            _act_backward(G, L.a, n, C, self.output)
        return 0

    cdef bint _output_from_logits(self) noexcept nogil:
        """Whether the last layer's buffer holds logits that the output
        activation (sigmoid or softmax) has not been applied to."""
        return self.fused and self.output != ACT_LINEAR

    cdef void _metrics(self, Py_ssize_t n, const long long *labels,
                       const float *targets) noexcept nogil:
        """The metrics' sums over the model's outputs (the last layer's
        buffer, with the output activation applied when it holds logits)."""
        cdef _Layer *L = &self.layers[self.depth - 1]
        cdef Py_ssize_t C = L.fan_out
        cdef int k, code
        cdef bint logits = self._output_from_logits()
        cdef Activation act = self.output if logits else ACT_LINEAR
        for k in range(self.n_metrics):
            code = self.metric_codes[k]
            if code == ACC_ARGMAX_LABEL:
                self.metric_sum[k] = _correct_sparse(L.a, labels, n, C)
            elif code == ACC_ARGMAX_ONE_HOT:
                self.metric_sum[k] = _correct_categorical(L.a, targets, n, C)
            elif code == ACC_THRESHOLD:
                self.metric_sum[k] = _correct_threshold(L.a, targets, n, C, act)
            else:
                self.metric_sum[k] = _error_sum(L.a, targets, n, C, act,
                                                code == METRIC_SQUARED_ERROR)

    cdef void _backward(self, const float *x, Py_ssize_t n) noexcept nogil:
        cdef int k
        cdef _Layer *L
        cdef _Layer *P
        for k in range(self.depth - 1, -1, -1):
            L = &self.layers[k]
            _sgemm(True, False, L.fan_in, L.fan_out, n, x if k == 0 else self.layers[k - 1].out,
                   L.fan_in, L.d, L.fan_out, L.dW)
            _bias_grad(L.d, L.db, n, L.fan_out)
            if k:
                P = &self.layers[k - 1]
                _sgemm(False, True, n, L.fan_in, L.fan_out, L.d, L.fan_out, L.W, L.fan_out, P.d)
                if P.rate > 0:
                    _dropout(P.d, P.d, n, L.fan_in, P.rate, self.seed, self.step, k - 1)
                _act_backward(P.d, P.a, n, L.fan_in, P.act)

    cdef tuple _pass(self, object x, object y, object index, bint backward,
                     object total_rows=None):
        self._check_bound()
        cdef cnp.ndarray xm = self._samples(x)
        cdef const float *X
        cdef const long long *labels
        cdef const float *targets
        cdef Py_ssize_t n, mean_rows, correct = 0
        self._rows_of(xm, y, index, &X, &labels, &targets, &n)
        mean_rows = n if total_rows is None else _total_rows(total_rows, n)
        cdef double total = 0.0
        cdef int status
        with nogil:
            self._forward(X, n, ACT_LINEAR if self.fused else self.output, backward)
            status = self._loss(n, mean_rows, labels, targets, backward, &total, &correct)
            if status == 0 and backward:
                self._backward(X, n)
        if backward:
            self.step += 1
        if status != 0:
            raise MemoryError(f"no scratch memory for a row of {self.outputs} classes")
        if backward:
            return total / (n * self.terms), correct
        return total, correct

    def gradients(self, x, y, index=None, total_rows=None):
        """Forward, loss and backward over one batch: the gradient of the
        mean loss is written into ``weight_grads`` and ``bias_grads``.

        The batch is ``x`` and ``y`` (at most ``rows`` samples), or with
        ``index`` (int64) their rows ``index`` gathered into this network's
        own buffers (``x`` and ``y`` may then be a whole training set).
        ``x`` is float32 (N, inputs), C-contiguous; ``y`` int64 labels (N,)
        for sparse categorical cross-entropy, else float32 (N, outputs),
        finite.  Returns ``(mean loss, correct predictions)``; the mean is
        over samples for the cross-entropies and over every output for
        binary cross-entropy and mse, as Keras and torch average them.
        The layers' dropout is applied (inverted: kept activations are
        scaled by ``1 / (1 - rate)``, as Keras' Dropout), with masks keyed by
        (seed, call count, layer, batch row, column); see :meth:`reseed`.

        ``total_rows`` (an int >= the batch's rows; default: the batch's
        rows): the gradient written is that of the loss summed over the
        batch and divided by ``total_rows`` instead, the batch's share of
        the mean over ``total_rows`` samples (one rank's part of a global
        batch, at no extra pass: the loss gradient's scale is
        ``1 / total_rows`` in place of ``1 / rows``).  The returned loss
        stays the mean over the batch's own rows.
        """
        return self._pass(x, y, index, True, total_rows)

    def evaluate(self, x, y):
        """``(summed loss, correct predictions)`` over ``x`` and ``y`` (at
        most ``rows`` samples), as :meth:`gradients` would count them; no
        gradient is written."""
        return self._pass(x, y, None, False)

    def forward(self, x, out):
        """The outputs (after the output activation) of ``x`` (float32
        (N, inputs), N <= rows) into ``out`` (float32 (N, outputs),
        C-contiguous, writable)."""
        self._check_bound()
        cdef cnp.ndarray xm = self._samples(x)
        cdef Py_ssize_t n = xm.shape[0]
        cdef cnp.ndarray o = _matrix(out, "out", True)
        self._apart(o, "out", True)
        if o.shape[0] != n or o.shape[1] != self.outputs:
            raise ValueError(f"out must have shape ({n}, {self.outputs}), got "
                             f"{(<object>o).shape}")
        if n > self.max_rows:
            raise ValueError(f"x has {n} samples, more than this Network's rows={self.max_rows}")
        cdef const float *X = <const float *>cnp.PyArray_DATA(xm)
        cdef float *O = _f32(o)
        cdef _Layer *L = &self.layers[self.depth - 1]
        with nogil:
            self._forward(X, n, self.output, False)
            memcpy(O, L.a, n * self.outputs * sizeof(float))

    @property
    def rows(self):
        """The most samples one call can take."""
        return self.max_rows

    def __repr__(self):
        if self.layers == NULL:
            return "<Network (uninitialised)>"
        sizes = [self.inputs] + [self.layers[k].fan_out for k in range(self.depth)]
        return f"<Network {sizes} for up to {self.max_rows} samples>"
