"""The update kernels' arguments, declared once: one table per rule.

``setup.py`` expands ``updates.pxi.tp`` with these tables (Cython's Tempita,
as scikit-learn builds ``sklearn/_loss/_loss.pyx``) into ``updates.pxi``:
each kernel's ``def``, the checks that fill its C argument struct, the
struct's Cython declaration, and ``bind``'s dispatch.  :func:`stub_text`
gives the kernels' part of ``fastopt/_kernels.pyi`` (a test compares the
committed stub with it).  A build input only: not installed with fastopt.

Adding a hyperparameter to a rule touches its C body and struct in
``fastopt_kernels.h``, one ``Arg`` here (and its place in ``checks``), and
the docstring below.
"""
from pathlib import Path
from typing import NamedTuple

REQUIRED = None  # the default of an argument that has none

# How a hyperparameter is checked: the type of its checked value (a member
# of the rule's hyperparameter struct), the check (see checks.pxi), and its
# type in the stub.
CHECKS = {
    "nonneg": ("double", '_nonneg({arg}, "{arg}")', "_Real"),
    "finite": ("double", '_finite({arg}, "{arg}")', "_Real"),
    "unit_open": ("double", '_unit({arg}, "{arg}", False)', "_Real"),
    "unit_closed": ("double", '_unit({arg}, "{arg}", True)', "_Real"),
    "flag": ("bint", '_flag({arg}, "{arg}")', "_Bool"),
    "step": ("long long", '_step({arg}, "{arg}")', "int"),
    "convention": ("bint", "_keras({arg})", "_Convention"),
    "rounding": ("bint", '_choice({arg}, "{arg}", ("nearest", "stochastic")) == 1',
                 "_Rounding"),
    "seed": ("unsigned int", '_seed({arg}, "{arg}")', "int"),
}
# param: written; grad: read; state: written; copy: written (a low-precision copy of
# param); scales: written, the block scales of the first state buffer's 8-bit format
BUFFERS = ("param", "grad", "state", "copy", "scales")

# The element formats a buffer may have (its ``formats``), as the codes of
# fastopt_kernels.h (FO_F32, FO_F16, FO_BF16): the kernel reads or writes
# each one in its own format.  bfloat16 is ml_dtypes.bfloat16; uint8 is
# 8-bit block-wise state (codes, with the blocks' scales in a "scales" buffer).
FORMAT_CODES = {"float32": 0, "float16": 1, "bfloat16": 2, "uint8": 5}


class Arg(NamedTuple):
    """One parameter of a kernel, in signature order.

    ``check``: a key of CHECKS, or a buffer kind (BUFFERS).  ``field``: the
    member of the C argument struct it is copied to unchanged (None when
    the rule's fill function derives members from it, or for the members
    every rule has: see updates.pxi.tp).  ``when``: for an optional state
    buffer, the C condition on the checked hyperparameters ``h`` under which
    it is required, and how the message says it.  ``formats``: for a
    buffer, the dtypes it may have (FORMAT_CODES); a buffer with another
    format than float32 is given to C as ``void *`` beside its format code
    (member ``gfmt`` for the gradient, ``sfmt`` for the state buffers, which
    share one format, ``cfmt`` for a copy).
    """
    name: str
    default: str | None
    check: str
    field: str | None = None
    when: tuple[str, str] | None = None
    formats: tuple[str, ...] = ("float32",)

    @property
    def is_buffer(self):
        return self.check in BUFFERS

    @property
    def low_precision(self):
        """A buffer that may have another format than float32."""
        return self.formats != ("float32",)

    @property
    def format_member(self):
        """The C struct member holding its format code."""
        return {"grad": "gfmt", "state": "sfmt", "copy": "cfmt"}[self.check]

    @property
    def format_codes(self):
        """Its formats as a C tuple literal of format codes."""
        return "(" + ", ".join(str(FORMAT_CODES[f]) for f in self.formats) + ",)"

    @property
    def member(self):
        """Its member in the struct of checked hyperparameters."""
        return "keras" if self.check == "convention" else self.name


KEYWORD_ONLY = Arg("*", None, "*")


class Rule(NamedTuple):
    """One update rule of fastopt_kernels.h: ``fo_<name>_args`` and
    ``fo_active.<name>``.  ``checks``: the hyperparameters in the order they
    are checked, which decides the error a call with two defects gets (the
    buffers come after them, in signature order).  ``derived``: the
    struct's members that ``_<name>_fill`` and ``_<name>_at_step`` compute.
    ``extra``: a check across hyperparameters, run after theirs;
    ``extra_buffers``: a check across the buffers' formats and the
    hyperparameters, run once the C arguments are filled."""
    name: str
    args: list[Arg]
    checks: str
    derived: tuple[str, ...]
    extra: str | None = None
    extra_buffers: str | None = None

    @property
    def hyper(self):
        """The hyperparameters, in the order they are checked."""
        by_name = {a.name: a for a in self.args}
        return [by_name[name] for name in self.checks.split()]

    @property
    def buffers(self):
        return [a for a in self.args if a.is_buffer]

    @property
    def step_required(self):
        """Whether a call must give ``step`` (it has no default)."""
        return any(a.name == "step" and a.default is REQUIRED for a in self.args)

    @property
    def has_step(self):
        return any(a.name == "step" for a in self.args)

    @property
    def shared_format_pairs(self):
        """(buffer, first): each low-precision state buffer after the first,
        which must have the first's format (the struct has one ``sfmt``)."""
        states = [a for a in self.buffers if a.check == "state" and a.low_precision]
        return [(a, states[0]) for a in states[1:]]

    def sets_format(self, arg):
        """Whether low-precision buffer ``arg`` sets its format member: the
        gradient, a copy, and of the state buffers the first (the others
        must have its format, see shared_format_pairs, or be None)."""
        states = [a for a in self.buffers if a.check == "state" and a.low_precision]
        return arg.check != "state" or arg is states[0]

    @property
    def grad_format(self):
        """The C expression of the gradient's format code."""
        return "a.gfmt" if self.buffers[1].low_precision else "0"

    @property
    def params(self):
        """The argument names of the rule's C-level entry, in signature order."""
        return [a.name for a in self.args if a.name != "*"]

    @property
    def fields(self):
        """Members copied unchanged, as (C declaration, Arg)."""
        c_type = {"param": "float *", "grad": "const float *", "state": "float *",
                  "scales": "float *",
                  "double": "float ", "bint": "int ", "unsigned int": "unsigned int "}
        lowp = {"grad": "const void *", "state": "void *", "copy": "void *"}
        return [((lowp if a.low_precision else c_type).get(a.check)
                 or c_type[CHECKS[a.check][0]], a)
                for a in self.args if a.field]


class Kernel(NamedTuple):
    """A public kernel: a rule's arguments, some of them fixed or with
    other defaults (adamw_ is adam_ with decoupled weight decay)."""
    name: str
    rule: Rule
    doc: str
    fixed: dict[str, str] = {}
    defaults: dict[str, str] = {}

    @property
    def args(self):
        return [a._replace(default=self.defaults.get(a.name, a.default))
                for a in self.rule.args if a.name not in self.fixed]

    def call(self, value="{}"):
        """The arguments this kernel passes to its rule's checks, each
        argument's name formatted into ``value`` unless it is fixed."""
        return ", ".join(self.fixed.get(name) or value.format(name)
                         for name in self.rule.params)


COMMON_TAIL = [  # the last arguments of every kernel, in this order
    Arg("grad_scale", "1.0", "finite"),
    Arg("skip_nonfinite", "False", "flag"),
    Arg("convention", '"torch"', "convention"),
]
PARAM = Arg("param", REQUIRED, "param", "p")
GRAD = Arg("grad", REQUIRED, "grad", "g")
MAXIMIZE = Arg("maximize", "False", "flag")
DECOUPLED = Arg("decoupled_weight_decay", "False", "flag")
WEIGHT_DECAY = Arg("weight_decay", "0.0", "nonneg")
MOMENTUM = Arg("momentum", "0.0", "nonneg", "mu")
# The gradient and state formats of the rules that take low precision:
# gradients float16 / bfloat16 (widened exactly), state bfloat16 (rounded as
# ``rounding`` says, with ``seed``) or, for Adam only, 8-bit.
LOW_GRAD = GRAD._replace(formats=("float32", "float16", "bfloat16"))
BF16_STATE = ("float32", "bfloat16")
LOW_STATE = BF16_STATE + ("uint8",)
ROUNDING = Arg("rounding", '"nearest"', "rounding")
SEED = Arg("seed", "0", "seed")
MOMENTUM_BUF = Arg("momentum_buf", "None", "state", "buf",
                   when=("h.momentum != 0.0", "momentum != 0"), formats=BF16_STATE)

SGD = Rule(
    "sgd",
    [PARAM, LOW_GRAD, MOMENTUM_BUF,
     KEYWORD_ONLY,
     Arg("lr", REQUIRED, "nonneg"),
     MOMENTUM,
     Arg("dampening", "0.0", "unit_closed"),
     Arg("nesterov", "False", "flag", "nesterov"),
     WEIGHT_DECAY,
     MAXIMIZE,
     Arg("step", "1", "step"),
     DECOUPLED, ROUNDING, SEED, *COMMON_TAIL],
    checks="convention lr momentum dampening weight_decay nesterov maximize grad_scale "
           "skip_nonfinite decoupled_weight_decay step rounding seed",
    derived=("float c, nd, s", "int first, gfmt, sfmt, stochastic", "unsigned int key"),
    extra="_sgd_nesterov(&h, momentum, dampening)",
    extra_buffers='_stochastic_state(&a.stochastic, h.rounding, a.sfmt, "momentum_buf is")',
)

ADAGRAD = Rule(
    "adagrad",
    [PARAM, LOW_GRAD, Arg("state_sum", REQUIRED, "state", "sum", formats=BF16_STATE),
     KEYWORD_ONLY,
     Arg("step", REQUIRED, "step"),
     Arg("lr", "1e-2", "nonneg"),
     Arg("lr_decay", "0.0", "nonneg"),
     WEIGHT_DECAY,
     Arg("eps", "1e-10", "nonneg", "eps"),
     MAXIMIZE, DECOUPLED, ROUNDING, SEED, *COMMON_TAIL],
    checks="convention step lr lr_decay weight_decay eps maximize grad_scale skip_nonfinite "
           "decoupled_weight_decay rounding seed",
    derived=("float neg_clr", "int eps_inside, gfmt, sfmt, stochastic", "unsigned int key"),
    extra_buffers='_stochastic_state(&a.stochastic, h.rounding, a.sfmt, "state_sum is")',
)

RMSPROP = Rule(
    "rmsprop",
    [PARAM, LOW_GRAD, Arg("square_avg", REQUIRED, "state", "sq", formats=BF16_STATE),
     KEYWORD_ONLY,
     Arg("lr", "1e-2", "nonneg"),
     Arg("alpha", "0.99", "unit_closed", "alpha"),
     Arg("eps", "1e-8", "nonneg", "eps"),
     WEIGHT_DECAY,
     MOMENTUM,
     MOMENTUM_BUF,
     Arg("centered", "False", "flag"),
     Arg("grad_avg", "None", "state", "gavg", ("h.centered", "centered=True"),
         formats=BF16_STATE),
     MAXIMIZE, DECOUPLED, Arg("step", "1", "step"), ROUNDING, SEED, *COMMON_TAIL],
    checks="convention lr alpha eps weight_decay momentum centered maximize grad_scale "
           "skip_nonfinite decoupled_weight_decay step rounding seed",
    derived=("float one_m_alpha, c, s, a_c",
             "int eps_inside, a_from_d, sq_first, gfmt, sfmt, stochastic", "unsigned int key"),
    extra_buffers='_stochastic_state(&a.stochastic, h.rounding, a.sfmt, "square_avg is")',
)

ADAM = Rule(
    "adam",
    [PARAM, LOW_GRAD, Arg("exp_avg", REQUIRED, "state", "m", formats=LOW_STATE),
     Arg("exp_avg_sq", REQUIRED, "state", "v", formats=LOW_STATE),
     KEYWORD_ONLY,
     Arg("step", REQUIRED, "step"),
     Arg("lr", "1e-3", "nonneg"),
     Arg("beta1", "0.9", "unit_open"),
     Arg("beta2", "0.999", "unit_open", "beta2"),
     Arg("eps", "1e-8", "nonneg", "eps"),
     WEIGHT_DECAY,
     DECOUPLED,
     Arg("amsgrad", "False", "flag"),
     Arg("max_exp_avg_sq", "None", "state", "vmax", ("h.amsgrad", "amsgrad=True")),
     Arg("param_copy", "None", "copy", "pcopy", formats=("bfloat16", "float16")),
     Arg("state_scales", "None", "scales", "scales"),
     ROUNDING, SEED,
     MAXIMIZE, *COMMON_TAIL],
    checks="convention step lr beta1 beta2 eps weight_decay decoupled_weight_decay amsgrad "
           "rounding seed maximize grad_scale skip_nonfinite",
    derived=("float m_c, one_m_beta2, dscale, neg_step",
             "int gfmt, sfmt, cfmt, stochastic, m_from_d", "unsigned int key", "Py_ssize_t n"),
    extra_buffers="_adam_formats(&a, &h, n)",
)

NADAM = Rule(
    "nadam",
    [PARAM, GRAD, Arg("exp_avg", REQUIRED, "state", "m"),
     Arg("exp_avg_sq", REQUIRED, "state", "v"),
     KEYWORD_ONLY,
     Arg("step", REQUIRED, "step"),
     Arg("lr", "2e-3", "nonneg"),
     Arg("beta1", "0.9", "unit_open"),
     Arg("beta2", "0.999", "unit_open", "beta2"),
     Arg("eps", "1e-8", "nonneg", "eps"),
     WEIGHT_DECAY,
     Arg("momentum_decay", "4e-3", "nonneg"),
     DECOUPLED, MAXIMIZE, *COMMON_TAIL],
    checks="convention step lr beta1 beta2 eps weight_decay momentum_decay "
           "decoupled_weight_decay maximize grad_scale skip_nonfinite",
    derived=("float m_c, one_m_beta2, bc2, cg, cm", "int m_from_d"),
)

ADAMAX = Rule(
    "adamax",
    [PARAM, GRAD, Arg("exp_avg", REQUIRED, "state", "m"),
     Arg("exp_inf", REQUIRED, "state", "u"),
     KEYWORD_ONLY,
     Arg("step", REQUIRED, "step"),
     Arg("lr", "2e-3", "nonneg"),
     Arg("beta1", "0.9", "unit_open"),
     Arg("beta2", "0.999", "unit_open", "beta2"),
     Arg("eps", "1e-8", "nonneg"),
     WEIGHT_DECAY, DECOUPLED, MAXIMIZE, *COMMON_TAIL],
    checks="convention step lr beta1 beta2 eps weight_decay decoupled_weight_decay "
           "maximize grad_scale skip_nonfinite",
    derived=("float m_c, eps_in, eps_out, neg_step", "int m_from_d"),
)

ADADELTA = Rule(
    "adadelta",
    [PARAM, GRAD, Arg("square_avg", REQUIRED, "state", "sq"),
     Arg("acc_delta", REQUIRED, "state", "acc"),
     KEYWORD_ONLY,
     Arg("lr", "1.0", "nonneg"),
     Arg("rho", "0.9", "unit_closed", "rho"),
     Arg("eps", "1e-6", "nonneg", "eps"),
     WEIGHT_DECAY, DECOUPLED, MAXIMIZE, *COMMON_TAIL],
    checks="convention lr rho eps weight_decay decoupled_weight_decay maximize grad_scale "
           "skip_nonfinite",
    derived=("float one_m_rho, neg_lr",),
)

LION = Rule(
    "lion",
    [PARAM, GRAD, Arg("exp_avg", REQUIRED, "state", "m"),
     KEYWORD_ONLY,
     Arg("lr", "1e-4", "nonneg"),
     Arg("beta1", "0.9", "unit_closed", "beta1"),
     Arg("beta2", "0.99", "unit_closed", "beta2"),
     WEIGHT_DECAY,
     Arg("decoupled_weight_decay", "True", "flag"),
     MAXIMIZE, *COMMON_TAIL],
    checks="convention lr beta1 beta2 weight_decay decoupled_weight_decay maximize "
           "grad_scale skip_nonfinite",
    derived=("float one_m_beta1, one_m_beta2, neg_lr",),
)

RULES = [SGD, ADAGRAD, RMSPROP, ADAM, NADAM, ADAMAX, ADADELTA, LION]

LERP_NOTE = """
``lerp(a, b, w)`` is computed as torch's ``lerp_`` computes it: ``a + w *
(b - a)`` when ``w < 0.5``, else ``b - (1 - w) * (b - a)``, which is exact
at ``w = 1`` (``beta = 0``); Keras' rule computes ``a + (b - a) * w`` at
every ``w``, and so does ``convention='keras'``.
"""

SGD_DOC = """\
SGD step, in place: ``param`` (and ``momentum_buf``) are updated.

All arrays are C-contiguous, with the same number of elements; float32
unless the low-precision note below says otherwise.

PyTorch rule (``convention='torch'``, ``torch.optim.SGD``)::

    g = -grad if maximize else grad
    g = g + weight_decay * param                        (L2 decay)
    if momentum != 0:
        buf = g                              if step == 1
        buf = momentum * buf + (1 - dampening) * g       otherwise
        g   = g + momentum * buf if nesterov else buf
    param = param - lr * g

Keras rule (``convention='keras'``, ``keras.optimizers.SGD``): the
buffer is Keras' velocity, which carries the learning rate; it must
start at zero and ``step`` and ``dampening`` are not used::

    buf   = momentum * buf - lr * g
    param = param + buf                                 (plain)
    param = param + momentum * buf - lr * g             (nesterov)

``decoupled_weight_decay=True`` replaces the L2 term by
``param = param * (1 - lr * weight_decay)`` before the update (Keras'
``weight_decay``).  ``momentum_buf`` is required when ``momentum != 0``
and left untouched when ``momentum == 0``.  ``nesterov`` needs
``momentum > 0`` and ``dampening == 0``.
"""

ADAGRAD_DOC = """\
Adagrad step, in place: ``param`` and ``state_sum`` are updated.

PyTorch rule (``convention='torch'``, ``torch.optim.Adagrad``)::

    g     = -grad if maximize else grad
    g     = g + weight_decay * param                    (L2 decay)
    clr   = lr / (1 + (step - 1) * lr_decay)
    state_sum = state_sum + g * g
    param = param - clr * g / (sqrt(state_sum) + eps)    (clr * g first, as torch's addcdiv)

Keras rule (``convention='keras'``, ``keras.optimizers.Adagrad``): eps
inside the root, ``param - lr * g / sqrt(state_sum + eps)``; the Keras
class starts ``state_sum`` at ``initial_accumulator_value`` (0.1).

``decoupled_weight_decay=True`` replaces the L2 term by
``param = param * (1 - lr * weight_decay)`` before the update.
"""

RMSPROP_DOC = """\
RMSprop step, in place: ``param`` and the state buffers are updated.

PyTorch rule (``convention='torch'``, ``torch.optim.RMSprop``)::

    g = -grad if maximize else grad
    g = g + weight_decay * param                        (L2 decay)
    square_avg = alpha * square_avg + (1 - alpha) * g * g
    if centered:
        grad_avg = lerp(grad_avg, g, 1 - alpha)         (see below)
        d = sqrt(square_avg - grad_avg**2) + eps
    else:
        d = sqrt(square_avg) + eps
    if momentum != 0:
        momentum_buf = momentum * momentum_buf + g / d
        param = param - lr * momentum_buf
    else:
        param = param - lr * g / d

Keras rule (``convention='keras'``, ``keras.optimizers.RMSprop`` with
``rho = alpha``): eps inside the root (``d = sqrt(... + eps)``), and the
momentum buffer carries the learning rate:
``momentum_buf = momentum * momentum_buf + lr * g / d``,
``param = param - momentum_buf``, and ``square_avg = alpha * square_avg +
(1 - alpha) * (g * g)``.

Products and quotients are evaluated left to right as written, in float32,
in the order of each framework's own code (torch's ``addcmul``/``addcdiv``,
Keras' ops), so one step gives their bits.

``momentum_buf`` is required when ``momentum != 0``, ``grad_avg`` when
``centered``.  ``decoupled_weight_decay=True`` replaces the L2 term by
``param = param * (1 - lr * weight_decay)`` before the update.
"""

BF16_STATE_NOTE = """
Low precision (fastopt's own; the arithmetic stays float32, as in
:func:`adam_`):

- ``grad`` may be float32, float16 or bfloat16 (``ml_dtypes.bfloat16``);
  it is widened exactly to float32.
- {state} may be bfloat16{all_one}.  Each is read, widened to
  float32, updated as above in float32, and stored rounded to bfloat16;
  this step's parameter update uses the float32 values before that
  rounding.  ``rounding='nearest'``: round to nearest even.
  ``'stochastic'``: rounded up (in magnitude) with probability equal to
  the dropped fraction, from 16 bits of the counter-based hash of
  (element index, ``step``, ``seed``) that :func:`adam_` uses ({bits}):
  unbiased, and the same bits for every thread count and SIMD variant.
  Pass the step count
  as ``step`` with stochastic rounding: a repeated ``step`` repeats the
  random bits.  (No 8-bit state for this rule: that is Adam's.)
"""

ADAM_DOC = """\
Adam step, in place: ``param``, ``exp_avg``, ``exp_avg_sq`` (and
``max_exp_avg_sq``) are updated.  ``step`` is the 1-based step count.

PyTorch rule (``convention='torch'``, ``torch.optim.Adam``)::

    g = -grad if maximize else grad
    if decoupled_weight_decay: param = param * (1 - lr * weight_decay)
    else:                      g = g + weight_decay * param
    exp_avg    = lerp(exp_avg, g, 1 - beta1)            (see below)
    exp_avg_sq = beta2 * exp_avg_sq + (1 - beta2) * g * g
    bc1 = 1 - beta1**step;  bc2 = 1 - beta2**step       (in double)
    v = max(max_exp_avg_sq, exp_avg_sq) if amsgrad else exp_avg_sq
    (amsgrad stores that maximum back into max_exp_avg_sq)
    param = param - (lr / bc1) * exp_avg / (sqrt(v) / sqrt(bc2) + eps)

Keras rule (``convention='keras'``, ``keras.optimizers.Adam``): eps is
added before bias correction,
``param = param - lr * sqrt(bc2) / bc1 * exp_avg / (sqrt(v) + eps)``;
use it with Keras' ``eps=1e-7``.

Low precision (fastopt's own; the arithmetic stays float32):

- ``grad`` may be float32, float16 or bfloat16 (``ml_dtypes.bfloat16``);
  it is widened exactly to float32.
- ``exp_avg`` and ``exp_avg_sq`` may both be bfloat16 (20 bytes moved
  per element instead of 28).  Each is read, widened to float32, updated
  as above in float32, and stored rounded to bfloat16; this step's
  parameter update uses the float32 values before that rounding.
  ``rounding='nearest'``: round to nearest even.  ``'stochastic'``:
  rounded up (in magnitude) with probability equal to the dropped
  fraction, from 16 bits of a counter-based hash of (element index,
  ``step``, ``seed``): unbiased, and the same bits for every thread count
  and SIMD variant.  nan stays nan; a value past bfloat16's range rounds
  to inf.  ``amsgrad`` needs float32 state.
- ``exp_avg`` and ``exp_avg_sq`` may both be uint8: 8-bit block-wise
  state (Dettmers et al. 2022; 16 bytes moved per element).  Each block
  of 2048 elements of each moment has one float32 scale, its largest
  absolute value, in ``state_scales`` (float32, ``2 * ceil(n / 2048)``
  elements: exp_avg's scales, then exp_avg_sq's; finite and >= 0; zeros
  to start).  A byte holds a small float relative to the scale:
  ``exp_avg`` sign, 4-bit exponent, 3-bit mantissa (``scale * 2**(e-15)
  * (1 + f/8)``, 0 below ``2**-14 * scale``); ``exp_avg_sq`` 5-bit
  exponent, 3-bit mantissa (``scale * 2**(e-31) * (1 + f/8)``, a positive
  value below the range stored as the smallest code).  Per block, one
  pass: decode, update as above in float32, take the new scales, encode
  (mantissa rounded to nearest even).
- ``param_copy`` (optional, bfloat16 or float16, shaped like param)
  receives the updated parameter rounded to nearest even, in the same
  pass (an inference or accelerator copy).
"""

ADAMW_DOC = """\
AdamW step (``torch.optim.AdamW``): :func:`adam_` with decoupled weight
decay, ``param = param * (1 - lr * weight_decay)`` before the Adam update,
and ``weight_decay=1e-2`` by default.  Same arguments as :func:`adam_`.
"""

NADAM_DOC = """\
NAdam step, in place: ``param``, ``exp_avg`` and ``exp_avg_sq`` are
updated.  ``step`` is the 1-based step count.

PyTorch rule (``convention='torch'``, ``torch.optim.NAdam``)::

    g = -grad if maximize else grad
    if decoupled_weight_decay: param = param * (1 - lr * weight_decay)
    else:                      g = g + weight_decay * param
    mu(t)   = beta1 * (1 - 0.5 * 0.96**(t * momentum_decay))
    prod(t) = mu(1) * ... * mu(t)                       (in double)
    exp_avg    = lerp(exp_avg, g, 1 - beta1)            (see below)
    exp_avg_sq = beta2 * exp_avg_sq + (1 - beta2) * g * g
    denom = sqrt(exp_avg_sq / (1 - beta2**step)) + eps
    param = param - lr * (1 - mu(step)) / (1 - prod(step)) * g / denom
    param = param - lr * mu(step+1) / (1 - prod(step+1)) * exp_avg / denom

``prod`` (PyTorch's ``mu_product`` state) is computed in double from
``step`` (continuing the previous call's product when it can, with the
same bits), so the caller keeps no scalar state.

Keras rule (``convention='keras'``, ``keras.optimizers.Nadam``): the same
update with Keras' momentum schedule ``mu(t) = beta1 * (1 - 0.5 *
0.96**t)`` (``momentum_decay`` is not used; Keras' ``u_product`` is
``prod``); use it with Keras' ``eps=1e-7`` and decoupled weight decay.
"""

ADAMAX_DOC = """\
Adamax step, in place: ``param``, ``exp_avg`` and ``exp_inf`` are
updated.  ``step`` is the 1-based step count.

PyTorch rule (``convention='torch'``, ``torch.optim.Adamax``)::

    g = -grad if maximize else grad
    g = g + weight_decay * param                        (L2 decay)
    exp_avg = lerp(exp_avg, g, 1 - beta1)               (see below)
    exp_inf = max(beta2 * exp_inf, |g| + eps)           (nan propagates)
    param   = param - lr / (1 - beta1**step) * exp_avg / exp_inf

Keras rule (``convention='keras'``, ``keras.optimizers.Adamax``): eps
outside the maximum, ``exp_inf = max(beta2 * exp_inf, |g|)``,
``param = param - lr / (1 - beta1**step) * exp_avg / (exp_inf + eps)``.

``decoupled_weight_decay=True`` replaces the L2 term by
``param = param * (1 - lr * weight_decay)`` before the update.
"""

ADADELTA_DOC = """\
Adadelta step, in place: ``param``, ``square_avg`` and ``acc_delta`` are
updated.

The rule of ``torch.optim.Adadelta`` and ``keras.optimizers.Adadelta``
(they differ only in defaults: PyTorch ``lr=1.0, rho=0.9, eps=1e-6``,
Keras ``learning_rate=0.001, rho=0.95, epsilon=1e-7``)::

    g = -grad if maximize else grad
    g = g + weight_decay * param                        (L2 decay)
    square_avg = rho * square_avg + (1 - rho) * g * g
    delta      = sqrt(acc_delta + eps) / sqrt(square_avg + eps) * g
    acc_delta  = rho * acc_delta + (1 - rho) * delta * delta
    param      = param - lr * delta

``decoupled_weight_decay=True`` replaces the L2 term by
``param = param * (1 - lr * weight_decay)`` before the update (Keras'
``weight_decay``).  ``convention`` is accepted for symmetry; both give
this rule.
"""

LION_DOC = """\
Lion step (EvoLved Sign Momentum), in place: ``param`` and ``exp_avg``
are updated.

The rule of ``keras.optimizers.Lion``, optax's ``lion`` and
lion-pytorch (PyTorch has no Lion; ``convention`` gives the same rule)::

    g = -grad if maximize else grad
    param   = param * (1 - lr * weight_decay)           (decoupled)
    c       = beta1 * exp_avg + (1 - beta1) * g
    param   = param - lr * sign(c)           (sign(0) = 0, sign(nan) = nan)
    exp_avg = beta2 * exp_avg + (1 - beta2) * g

``decoupled_weight_decay=False`` adds ``weight_decay * param`` to ``g``
instead.  Keras' defaults: ``learning_rate=0.001, beta_1=0.9,
beta_2=0.99``; these kernel defaults (``lr=1e-4``) are lion-pytorch's.
"""

SGD_DOC += BF16_STATE_NOTE.format(
    state="``momentum_buf``", all_one="", bits="its low 16 bits")
ADAGRAD_DOC += BF16_STATE_NOTE.format(
    state="``state_sum``", all_one="", bits="its low 16 bits")
RMSPROP_DOC += BF16_STATE_NOTE.format(
    state="``square_avg``, ``momentum_buf`` and ``grad_avg``\n ",
    all_one=" (the given ones\n  all of one dtype)",
    bits="square_avg\n  its low 16 bits, momentum_buf its high 16, grad_avg the low 16 of\n"
         "  the hash with the key xor 0x9e3779b9")

KERNELS = [
    Kernel("sgd_", SGD, SGD_DOC),
    Kernel("adagrad_", ADAGRAD, ADAGRAD_DOC),
    Kernel("rmsprop_", RMSPROP, RMSPROP_DOC + LERP_NOTE),
    Kernel("adam_", ADAM, ADAM_DOC + LERP_NOTE),
    Kernel("adamw_", ADAM, ADAMW_DOC, fixed={"decoupled_weight_decay": "True"},
           defaults={"weight_decay": "1e-2"}),
    Kernel("nadam_", NADAM, NADAM_DOC + LERP_NOTE),
    Kernel("adamax_", ADAMAX, ADAMAX_DOC + LERP_NOTE),
    Kernel("adadelta_", ADADELTA, ADADELTA_DOC),
    Kernel("lion_", LION, LION_DOC),
]


# --------------------------------------------------------------------------
# Rendering.

def _default(arg):
    return "" if arg.default is REQUIRED else f"={arg.default}"


def signature(kernel):
    """The def's parameter list, as in Python source."""
    return ", ".join(a.name + _default(a) for a in kernel.args)


def docstring(kernel, indent="    "):
    """The docstring's source text, indented for a def body."""
    lines = kernel.doc.rstrip("\n").split("\n")
    body = [lines[0]] + [indent + line if line else "" for line in lines[1:]]
    return '"""' + "\n".join(body) + ("\n" + indent if len(lines) > 1 else "") + '"""'


def check(arg):
    return CHECKS[arg.check][1].format(arg=arg.name)


def c_type(arg):
    return CHECKS[arg.check][0]


_STUB_ARRAYS = {"float32": "_F32", "float16": "_F16", "bfloat16": "_BF16", "uint8": "_U8"}


def _stub_type(arg):
    if arg.is_buffer:
        kind = " | ".join(_STUB_ARRAYS[f] for f in arg.formats)
        return kind + " | None" if arg.default == "None" else kind
    return CHECKS[arg.check][2]


def stub_text():
    """The stubs of the update kernels, as in fastopt/_kernels.pyi."""
    out = []
    for kernel in KERNELS:
        out.append(f"def {kernel.name}(")
        for a in kernel.args:
            if a.name == "*":
                out.append("    *,")
            else:
                default = "" if a.default is REQUIRED else f" = {a.default}"
                out.append(f"    {a.name}: {_stub_type(a)}{default},")
        out.append(") -> bool | None: ...")
    return "\n".join(out) + "\n"


def expand(template_path, output_path):
    """Write ``output_path`` from the Tempita template, only if its text
    changed (so that an unchanged build does not recompile)."""
    from Cython import Tempita

    template = Path(template_path)
    text = Tempita.sub(template.read_text(), RULES=RULES, KERNELS=KERNELS, signature=signature,
                       docstring=docstring, check=check, c_type=c_type,
                       template_name=template.name)
    header = (f"# Generated from {template.name} and update_rules.py by setup.py; "
              f"do not edit.\n")
    output = Path(output_path)
    if not output.exists() or output.read_text() != header + text:
        output.write_text(header + text)
