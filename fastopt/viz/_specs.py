"""The optimizer names both `compare` and `paths` accept, and how an
``"adam:lr=3e-3,beta2=0.99"`` spec is read: one table of each name's usual
settings, in the kernels' argument names (Keras' names are accepted too)."""
from fastopt._validate import check_number

# name -> (kernel family, settings that make it that optimizer)
OPTIMIZERS = {
    "sgd": ("sgd", {}),
    "momentum": ("sgd", {"momentum": 0.9}),
    "nesterov": ("sgd", {"momentum": 0.9, "nesterov": True}),
    "adagrad": ("adagrad", {}),
    "rmsprop": ("rmsprop", {}),
    "adam": ("adam", {}),
    "adamw": ("adamw", {}),
}

# Keras' argument name -> the kernels' name (both spellings are accepted in a spec)
KERAS_NAMES = {"learning_rate": "lr", "rho": "alpha", "beta_1": "beta1", "beta_2": "beta2",
               "epsilon": "eps"}
_FLAGS = ("nesterov", "centered", "amsgrad")


def parse(spec):
    """``"name"`` or ``"name:key=value,..."`` -> ``(name, {key: value})``, the
    keys in the kernels' spelling (``lr``, ``alpha``, ``beta1``, ...)."""
    if not isinstance(spec, str):
        raise TypeError(f"optimizer must be a string like 'adam:lr=3e-3', got "
                        f"{type(spec).__name__}")
    name, _, rest = spec.partition(":")
    name = name.strip().lower()
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {name!r}")
    options = {}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, eq, text = item.partition("=")
        key = KERAS_NAMES.get(key.strip(), key.strip())
        if not eq or not key:
            raise ValueError(f"optimizer option must be key=value, got {item!r} in {spec!r}")
        options[key] = _value(key, text.strip(), spec)
    return name, options


def _value(key, text, spec):
    if key in _FLAGS:
        if text.lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"{key} must be true or false, got {text!r} in {spec!r}")
        return text.lower() in ("true", "1")
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{key} must be a number, got {text!r} in {spec!r}") from None
    return check_number(value, key)


def split(text):
    """``"sgd,adam:lr=3e-3,beta2=0.99,rmsprop"`` -> the specs: a comma starts a
    new spec only before a name (``key=value`` items stay with their spec)."""
    specs = []
    for item in (s.strip() for s in text.split(",")):
        if specs and "=" in item and ":" not in item:
            specs[-1] += "," + item
        elif item:
            specs.append(item)
    return specs
