"""``--schedule NAME[:key=value,...]``: a Keras-style learning-rate schedule
counted in optimizer steps, from epochs as the command line speaks of them."""
import fastopt
from fastopt.cli._shared import CLIError

SCHEDULES = ("none", "exponential", "inverse-time", "cosine", "step")


def make_schedule(spec, lr, steps_per_epoch, epochs):
    """The schedule ``spec`` names for a run of ``epochs`` epochs of
    ``steps_per_epoch`` steps starting at ``lr``, or None for ``none``."""
    name, _, rest = spec.partition(":")
    if name not in SCHEDULES:
        raise CLIError(f"unknown schedule {name!r}; expected one of {', '.join(SCHEDULES)}")
    params = _options(rest)
    try:
        sched = _build(name, params, lr, steps_per_epoch, epochs)
    except ValueError as exc:  # a value of the spec that the schedule rejects
        raise CLIError(f"--schedule {spec}: {exc}") from None
    if params:
        raise CLIError(f"--schedule {name} does not take {', '.join(sorted(params))}")
    return sched


def _options(text):
    """``"a=1,b=2"`` -> ``{"a": 1.0, "b": 2.0}``."""
    params = {}
    for item in filter(None, text.split(",")):
        key, eq, value = item.partition("=")
        try:
            params[key.strip()] = float(value) if eq else None
        except ValueError:
            raise CLIError(f"--schedule option {key} needs a number, got {value!r}") from None
        if not eq:
            raise CLIError(f"--schedule options are key=value, got {item!r}")
    return params


def _build(name, params, lr, steps_per_epoch, epochs):
    """The schedule, popping the options it uses from ``params``."""
    S = fastopt.schedules
    if name == "none":
        return None
    if name in ("exponential", "inverse-time"):  # rate per `epochs` epochs
        cls = S.ExponentialDecay if name == "exponential" else S.InverseTimeDecay
        return cls(lr, steps_per_epoch * params.pop("epochs", 1),
                   params.pop("rate", 0.9 if name == "exponential" else 0.5),
                   staircase=bool(params.pop("staircase", 0)))
    if name == "step":  # multiply by gamma every `every` epochs
        every = params.pop("every", max(1, epochs // 3))
        return S.ExponentialDecay(lr, steps_per_epoch * every, params.pop("gamma", 0.1),
                                  staircase=True)
    # cosine over the whole run, after an optional linear warm-up
    warmup = int(params.pop("warmup_epochs", 0) * steps_per_epoch)
    alpha = params.pop("alpha", 0.0)
    total = steps_per_epoch * epochs
    if warmup:
        return S.CosineDecay(0.0, max(total - warmup, 1), alpha=alpha, warmup_target=lr,
                             warmup_steps=warmup)
    return S.CosineDecay(lr, total, alpha=alpha)
