"""One description per update rule, shared by the parity tests.

A ``Rule`` knows which state buffers a configuration needs, how to call the
fastopt kernel on float32 buffers, and how to call the float64 reference on
the same values.  ``configs`` lists every valid combination of options, and
``draw_hyper`` draws random in-range hyperparameters for one of them.
"""
import itertools

import numpy as np

import fastopt
import reference as ref


def _loguniform(rng, lo, hi):
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _product(**options):
    keys = list(options)
    for values in itertools.product(*(options[k] for k in keys)):
        yield dict(zip(keys, values))


class Rule:
    name = ""
    uses_step = True

    def state_names(self, cfg):
        raise NotImplementedError

    def configs(self):
        raise NotImplementedError

    def draw_hyper(self, rng, cfg):
        raise NotImplementedError

    def init_state(self, rng, cfg, n):
        state = {"param": rng.standard_normal(n).astype(np.float32)}
        for name in self.state_names(cfg):
            state[name] = np.zeros(n, np.float32)
        return state

    def call(self, state, grad, hyper, step):
        """Run the fastopt kernel in place on float32 ``state``."""
        raise NotImplementedError

    def reference(self, state, grad, hyper, step):
        """New float64 state from the float64 reference."""
        raise NotImplementedError


class SGD(Rule):
    name = "sgd"

    def state_names(self, cfg):
        return ["momentum_buf"] if cfg["momentum"] else []

    def configs(self):
        for c in _product(momentum=[False, True], dampening=[False, True], nesterov=[False, True],
                          weight_decay=[False, True], maximize=[False, True],
                          decoupled_weight_decay=[False, True], convention=["torch", "keras"]):
            if c["nesterov"] and (not c["momentum"] or c["dampening"]):
                continue
            if c["dampening"] and (not c["momentum"] or c["convention"] == "keras"):
                continue
            if c["decoupled_weight_decay"] and not c["weight_decay"]:
                continue
            yield c

    def draw_hyper(self, rng, cfg):
        return dict(lr=_loguniform(rng, 1e-3, 1e-1),
                    momentum=rng.uniform(0.5, 0.99) if cfg["momentum"] else 0.0,
                    dampening=rng.uniform(0.05, 0.5) if cfg["dampening"] else 0.0,
                    nesterov=cfg["nesterov"],
                    weight_decay=_loguniform(rng, 1e-3, 1e-1) if cfg["weight_decay"] else 0.0,
                    maximize=cfg["maximize"],
                    decoupled_weight_decay=cfg["decoupled_weight_decay"],
                    convention=cfg["convention"])

    def call(self, state, grad, hyper, step):
        fastopt.sgd_(state["param"], grad, state.get("momentum_buf"), step=step, **hyper)

    def reference(self, state, grad, hyper, step):
        p, buf = ref.sgd(state["param"], grad, state.get("momentum_buf"), step=step, **hyper)
        out = {"param": p}
        if "momentum_buf" in state:
            out["momentum_buf"] = buf
        return out


class Adagrad(Rule):
    name = "adagrad"

    def state_names(self, cfg):
        return ["state_sum"]

    def configs(self):
        for c in _product(lr_decay=[False, True], weight_decay=[False, True],
                          maximize=[False, True], decoupled_weight_decay=[False, True],
                          convention=["torch", "keras"]):
            if c["decoupled_weight_decay"] and not c["weight_decay"]:
                continue
            if c["lr_decay"] and c["convention"] == "keras":
                continue
            yield c

    def draw_hyper(self, rng, cfg):
        return dict(lr=_loguniform(rng, 1e-3, 1e-1),
                    lr_decay=rng.uniform(0.001, 0.1) if cfg["lr_decay"] else 0.0,
                    weight_decay=_loguniform(rng, 1e-3, 1e-1) if cfg["weight_decay"] else 0.0,
                    eps=_loguniform(rng, 1e-5, 1e-1), maximize=cfg["maximize"],
                    decoupled_weight_decay=cfg["decoupled_weight_decay"],
                    convention=cfg["convention"])

    def init_state(self, rng, cfg, n):
        state = super().init_state(rng, cfg, n)
        if cfg["convention"] == "keras":
            state["state_sum"][:] = 0.1  # Keras' initial_accumulator_value
        return state

    def call(self, state, grad, hyper, step):
        fastopt.adagrad_(state["param"], grad, state["state_sum"], step=step, **hyper)

    def reference(self, state, grad, hyper, step):
        p, s = ref.adagrad(state["param"], grad, state["state_sum"], step=step, **hyper)
        return {"param": p, "state_sum": s}


class RMSprop(Rule):
    name = "rmsprop"
    uses_step = False

    def state_names(self, cfg):
        names = ["square_avg"]
        if cfg["momentum"]:
            names.append("momentum_buf")
        if cfg["centered"]:
            names.append("grad_avg")
        return names

    def configs(self):
        for c in _product(momentum=[False, True], centered=[False, True],
                          weight_decay=[False, True], maximize=[False, True],
                          decoupled_weight_decay=[False, True], convention=["torch", "keras"]):
            if c["decoupled_weight_decay"] and not c["weight_decay"]:
                continue
            yield c

    def draw_hyper(self, rng, cfg):
        return dict(lr=_loguniform(rng, 1e-4, 1e-2), alpha=rng.uniform(0.9, 0.999),
                    eps=_loguniform(rng, 1e-5, 1e-1),
                    weight_decay=_loguniform(rng, 1e-3, 1e-1) if cfg["weight_decay"] else 0.0,
                    momentum=rng.uniform(0.5, 0.95) if cfg["momentum"] else 0.0,
                    centered=cfg["centered"], maximize=cfg["maximize"],
                    decoupled_weight_decay=cfg["decoupled_weight_decay"],
                    convention=cfg["convention"])

    def call(self, state, grad, hyper, step):
        fastopt.rmsprop_(state["param"], grad, state["square_avg"],
                         momentum_buf=state.get("momentum_buf"), grad_avg=state.get("grad_avg"),
                         **hyper)

    def reference(self, state, grad, hyper, step):
        p, v, b, a = ref.rmsprop(state["param"], grad, state["square_avg"],
                                 state.get("momentum_buf"), state.get("grad_avg"), **hyper)
        out = {"param": p, "square_avg": v}
        if "momentum_buf" in state:
            out["momentum_buf"] = b
        if "grad_avg" in state:
            out["grad_avg"] = a
        return out


class Adam(Rule):
    name = "adam"

    def state_names(self, cfg):
        names = ["exp_avg", "exp_avg_sq"]
        if cfg["amsgrad"]:
            names.append("max_exp_avg_sq")
        return names

    def configs(self):
        for c in _product(amsgrad=[False, True], weight_decay=[False, True],
                          decoupled_weight_decay=[False, True], maximize=[False, True],
                          convention=["torch", "keras"]):
            if c["decoupled_weight_decay"] and not c["weight_decay"]:
                continue
            yield c

    def draw_hyper(self, rng, cfg):
        return dict(lr=_loguniform(rng, 1e-4, 1e-2), beta1=rng.uniform(0.8, 0.95),
                    beta2=rng.uniform(0.99, 0.9999), eps=_loguniform(rng, 1e-5, 1e-1),
                    weight_decay=_loguniform(rng, 1e-3, 1e-1) if cfg["weight_decay"] else 0.0,
                    decoupled_weight_decay=cfg["decoupled_weight_decay"],
                    amsgrad=cfg["amsgrad"], maximize=cfg["maximize"],
                    convention=cfg["convention"])

    def call(self, state, grad, hyper, step):
        fastopt.adam_(state["param"], grad, state["exp_avg"], state["exp_avg_sq"],
                      max_exp_avg_sq=state.get("max_exp_avg_sq"), step=step, **hyper)

    def reference(self, state, grad, hyper, step):
        p, m, v, vm = ref.adam(state["param"], grad, state["exp_avg"], state["exp_avg_sq"],
                               state.get("max_exp_avg_sq"), step=step, **hyper)
        out = {"param": p, "exp_avg": m, "exp_avg_sq": v}
        if "max_exp_avg_sq" in state:
            out["max_exp_avg_sq"] = vm
        return out


class _NewRule(Rule):
    """The rules added with issue #19: options weight decay (L2 or
    decoupled), maximize and the convention; ``kernel``/``ref`` by name."""
    states = ()

    def state_names(self, cfg):
        return list(self.states)

    def configs(self):
        for c in _product(weight_decay=[False, True], decoupled_weight_decay=[False, True],
                          maximize=[False, True], convention=["torch", "keras"]):
            if c["decoupled_weight_decay"] and not c["weight_decay"]:
                continue
            yield c

    def _common(self, rng, cfg):
        return dict(weight_decay=_loguniform(rng, 1e-3, 1e-1) if cfg["weight_decay"] else 0.0,
                    decoupled_weight_decay=cfg["decoupled_weight_decay"],
                    maximize=cfg["maximize"], convention=cfg["convention"])

    def _step(self, step):
        return {"step": step} if self.uses_step else {}

    def call(self, state, grad, hyper, step):
        getattr(fastopt, self.name + "_")(state["param"], grad,
                                          *(state[n] for n in self.states),
                                          **self._step(step), **hyper)

    def reference(self, state, grad, hyper, step):
        out = getattr(ref, self.name)(state["param"], grad, *(state[n] for n in self.states),
                                      **self._step(step), **hyper)
        return dict(zip(["param", *self.states], out))


class NAdam(_NewRule):
    name = "nadam"
    states = ("exp_avg", "exp_avg_sq")

    def draw_hyper(self, rng, cfg):
        return dict(lr=_loguniform(rng, 1e-4, 1e-2), beta1=rng.uniform(0.8, 0.95),
                    beta2=rng.uniform(0.99, 0.9999), eps=_loguniform(rng, 1e-5, 1e-1),
                    momentum_decay=_loguniform(rng, 1e-3, 1e-1), **self._common(rng, cfg))


class Adamax(_NewRule):
    name = "adamax"
    states = ("exp_avg", "exp_inf")

    def draw_hyper(self, rng, cfg):
        return dict(lr=_loguniform(rng, 1e-4, 1e-2), beta1=rng.uniform(0.8, 0.95),
                    beta2=rng.uniform(0.99, 0.9999), eps=_loguniform(rng, 1e-5, 1e-1),
                    **self._common(rng, cfg))


class Adadelta(_NewRule):
    name = "adadelta"
    states = ("square_avg", "acc_delta")
    uses_step = False

    def draw_hyper(self, rng, cfg):
        return dict(lr=_loguniform(rng, 1e-2, 1.0), rho=rng.uniform(0.8, 0.99),
                    eps=_loguniform(rng, 1e-7, 1e-3), **self._common(rng, cfg))


class Lion(_NewRule):
    name = "lion"
    states = ("exp_avg",)
    uses_step = False

    def draw_hyper(self, rng, cfg):
        return dict(lr=_loguniform(rng, 1e-4, 1e-2), beta1=rng.uniform(0.8, 0.95),
                    beta2=rng.uniform(0.95, 0.999), **self._common(rng, cfg))


RULES = [SGD(), Adagrad(), RMSprop(), Adam(), NAdam(), Adamax(), Adadelta(), Lion()]


def all_cases():
    """(rule, config) for every rule and valid option combination."""
    for rule in RULES:
        for cfg in rule.configs():
            yield rule, cfg


def case_id(rule, cfg):
    flags = [k if v is True else f"{k}={v}" for k, v in cfg.items() if v is not False]
    return rule.name + "[" + ",".join(flags) + "]"
