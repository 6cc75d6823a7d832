"""Float64 NumPy reference implementations of every update rule and of the
softmax cross-entropy (the oracle).

Written from ``docs/semantics.md`` in the frameworks'
own terms (not in the folded scalars the kernels use), so that a mistake in
how fastopt maps a rule onto its kernels shows up as a mismatch.  Every
function takes and returns float64 arrays and never modifies its inputs.
"""
import numpy as np


def sgd(p, g, buf, *, lr, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0,
        maximize=False, step=1, decoupled_weight_decay=False, convention="torch"):
    """Returns (p, buf)."""
    g = -g if maximize else g
    if decoupled_weight_decay:
        p = p - p * weight_decay * lr
    elif weight_decay:
        g = g + weight_decay * p
    if convention == "keras":  # keras.optimizers.SGD: velocity m = mu m - lr g
        if momentum == 0:
            return p - lr * g, buf
        m = momentum * buf - lr * g
        if nesterov:
            return p + momentum * m - lr * g, m
        return p + m, m
    if momentum != 0:
        buf = g.copy() if step == 1 else momentum * buf + (1 - dampening) * g
        g = g + momentum * buf if nesterov else buf
    return p - lr * g, buf


def adagrad(p, g, s, *, step, lr=1e-2, lr_decay=0.0, weight_decay=0.0, eps=1e-10,
            maximize=False, decoupled_weight_decay=False, convention="torch"):
    """Returns (p, state_sum)."""
    g = -g if maximize else g
    if decoupled_weight_decay:
        p = p - p * weight_decay * lr
    elif weight_decay:
        g = g + weight_decay * p
    s = s + g * g
    if convention == "keras":
        return p - lr * g / np.sqrt(s + eps), s
    clr = lr / (1 + (step - 1) * lr_decay)
    return p - clr * g / (np.sqrt(s) + eps), s


def rmsprop(p, g, v, buf=None, gavg=None, *, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0,
            momentum=0.0, centered=False, maximize=False, decoupled_weight_decay=False,
            convention="torch"):
    """Returns (p, square_avg, momentum_buf, grad_avg)."""
    g = -g if maximize else g
    if decoupled_weight_decay:
        p = p - p * weight_decay * lr
    elif weight_decay:
        g = g + weight_decay * p
    v = alpha * v + (1 - alpha) * g * g
    w = v
    if centered:
        gavg = alpha * gavg + (1 - alpha) * g
        w = v - gavg * gavg
    if convention == "keras":  # keras.optimizers.RMSprop, rho = alpha
        increment = lr * g / np.sqrt(w + eps)
        if momentum:
            buf = momentum * buf + increment
            return p - buf, v, buf, gavg
        return p - increment, v, buf, gavg
    d = np.sqrt(w) + eps
    if momentum:
        buf = momentum * buf + g / d
        return p - lr * buf, v, buf, gavg
    return p - lr * g / d, v, buf, gavg


def adam(p, g, m, v, vmax=None, *, step, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
         weight_decay=0.0, decoupled_weight_decay=False, amsgrad=False, maximize=False,
         convention="torch"):
    """Returns (p, exp_avg, exp_avg_sq, max_exp_avg_sq)."""
    g = -g if maximize else g
    if decoupled_weight_decay:
        p = p * (1 - lr * weight_decay)
    elif weight_decay:
        g = g + weight_decay * p
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    bc1 = 1 - beta1 ** step
    bc2 = 1 - beta2 ** step
    if amsgrad:
        vmax = np.maximum(vmax, v)
        w = vmax
    else:
        w = v
    if convention == "keras":  # alpha_t = lr sqrt(bc2) / bc1; eps before bias correction
        alpha_t = lr * np.sqrt(bc2) / bc1
        return p - alpha_t * m / (np.sqrt(w) + eps), m, v, vmax
    return p - (lr / bc1) * m / (np.sqrt(w) / np.sqrt(bc2) + eps), m, v, vmax


def _decay(p, g, lr, weight_decay, decoupled_weight_decay, maximize):
    """(p, g) after maximize and weight decay, L2 or decoupled."""
    g = -g if maximize else g
    if decoupled_weight_decay:
        p = p * (1 - lr * weight_decay)
    elif weight_decay:
        g = g + weight_decay * p
    return p, g


def nadam(p, g, m, v, *, step, lr=2e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
          momentum_decay=4e-3, decoupled_weight_decay=False, maximize=False,
          convention="torch"):
    """Returns (p, exp_avg, exp_avg_sq).  torch.optim.NAdam, or
    keras.optimizers.Nadam (u_t = beta_1 (1 - 0.5 * 0.96^t))."""
    p, g = _decay(p, g, lr, weight_decay, decoupled_weight_decay, maximize)
    if convention == "keras":
        def mu(t):
            return beta1 * (1 - 0.5 * 0.96 ** t)
    else:
        def mu(t):
            return beta1 * (1 - 0.5 * 0.96 ** (t * momentum_decay))
    prod = float(np.prod([mu(i) for i in range(1, step + 1)]))
    prod_next = prod * mu(step + 1)
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    v_hat = v / (1 - beta2 ** step)
    if convention == "keras":
        m_hat = mu(step + 1) * m / (1 - prod_next) + (1 - mu(step)) * g / (1 - prod)
        return p - m_hat * lr / (np.sqrt(v_hat) + eps), m, v
    denom = np.sqrt(v_hat) + eps
    p = p - lr * (1 - mu(step)) / (1 - prod) * g / denom
    return p - lr * mu(step + 1) / (1 - prod_next) * m / denom, m, v


def adamax(p, g, m, u, *, step, lr=2e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
           decoupled_weight_decay=False, maximize=False, convention="torch"):
    """Returns (p, exp_avg, exp_inf)."""
    p, g = _decay(p, g, lr, weight_decay, decoupled_weight_decay, maximize)
    m = beta1 * m + (1 - beta1) * g
    bc1 = 1 - beta1 ** step
    if convention == "keras":  # eps outside the max
        u = np.maximum(beta2 * u, np.abs(g))
        return p - lr * m / (bc1 * (u + eps)), m, u
    u = np.maximum(beta2 * u, np.abs(g) + eps)
    return p - (lr / bc1) * m / u, m, u


def adadelta(p, g, s, a, *, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0,
             decoupled_weight_decay=False, maximize=False, convention="torch"):
    """Returns (p, square_avg, acc_delta); the same rule in both conventions."""
    p, g = _decay(p, g, lr, weight_decay, decoupled_weight_decay, maximize)
    s = rho * s + (1 - rho) * g * g
    delta = np.sqrt(a + eps) / np.sqrt(s + eps) * g
    a = rho * a + (1 - rho) * delta * delta
    return p - lr * delta, s, a


def lion(p, g, m, *, lr=1e-4, beta1=0.9, beta2=0.99, weight_decay=0.0,
         decoupled_weight_decay=True, maximize=False, convention="torch"):
    """Returns (p, exp_avg): Keras 3 / optax / lion-pytorch."""
    p, g = _decay(p, g, lr, weight_decay, decoupled_weight_decay, maximize)
    p = p - lr * np.sign(beta1 * m + (1 - beta1) * g)
    return p, beta2 * m + (1 - beta2) * g


def softmax_cross_entropy(z, labels, smoothing=0.0, ignore=-100):
    """Softmax cross-entropy from logits ``z`` (n, C), as
    ``torch.nn.functional.cross_entropy`` defines it.

    ``labels`` are integer classes (n,) or probability targets (n, C); with
    ``smoothing`` s the target is ``(1 - s) * target + s / C``.  Returns the
    per-row losses, the gradient of their sum with respect to ``z``, and
    the mask of counted rows: a row whose integer label is ``ignore`` gets
    loss 0 and gradient 0 and is not counted.
    """
    z = np.asarray(z, np.float64)
    n, c = z.shape
    top = z.max(1, keepdims=True)
    lse = np.log(np.exp(z - top).sum(1, keepdims=True)) + top
    if labels.ndim == 1:
        keep = labels != ignore
        t = np.zeros_like(z)
        t[np.arange(n)[keep], labels[keep]] = 1
    else:
        keep = np.ones(n, bool)
        t = labels.astype(np.float64)
    t = (1 - smoothing) * t + smoothing / c
    per = np.where(keep, (t * (lse - z)).sum(1), 0.0)
    grad = np.where(keep[:, None], np.exp(z - lse) * t.sum(1, keepdims=True) - t, 0.0)
    return per, grad, keep


# (hidden activation, output activation, loss) of the MLP the model tests
# cover: every loss, each with an output activation it allows.
MODEL_CASES = [
    ("relu", "softmax", "sparse_categorical_crossentropy"),
    ("tanh", "softmax", "categorical_crossentropy"),
    ("sigmoid", "sigmoid", "binary_crossentropy"),
    ("relu", "linear", "mse"),
    ("tanh", "softmax", "mse"),
    ("linear", "sigmoid", "mse"),
]
