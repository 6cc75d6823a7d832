"""torch.optim.Optimizer's step wrapper, done by fastopt.torch only when needed.

torch wraps every optimizer's ``step`` (``Optimizer.profile_hook_step``) in
a profiler range, ``record_function("Optimizer.step#<Class>.step")``, that
runs the global and per-instance step pre-hooks before and post-hooks after
the update and calls ``_optimizer_step_code()`` (where a profiler with
Python tracing looks at the optimizer).  Entering the range costs more than
the whole fused update of a small flattened model, so fastopt.torch's
``step`` does exactly that only while a hook is registered or a profiler is
running (:func:`wrapped`), and otherwise runs the update directly: the same
observable behaviour, without the cost when nobody observes it.
"""

from itertools import chain

from torch._C._autograd import _profiler_enabled
from torch.autograd.profiler import record_function
from torch.optim.optimizer import _global_optimizer_post_hooks, _global_optimizer_pre_hooks


def wrapped(opt):
    """True when ``opt.step()`` must run torch's wrapper: a global or own step
    hook is registered, or a profiler (any: torch.profiler, autograd's) is on."""
    return bool(_global_optimizer_pre_hooks or _global_optimizer_post_hooks
                or opt._optimizer_step_pre_hooks or opt._optimizer_step_post_hooks
                or _profiler_enabled())


def hooked_step(opt, update, closure):
    """``update(closure)`` as torch's ``profile_hook_step`` runs a step: in the
    profiler range, after the pre-hooks (global first; each may return new
    ``(args, kwargs)``, ``args[0]`` being the optimizer), then the post-hooks
    (the optimizer's own first) with the arguments the step got."""
    with record_function(f"Optimizer.step#{type(opt).__name__}.step"):
        args, kwargs = (opt, closure), {}
        for hook in chain(_global_optimizer_pre_hooks.values(),
                          opt._optimizer_step_pre_hooks.values()):
            result = hook(opt, args, kwargs)
            if result is not None:
                if not (isinstance(result, tuple) and len(result) == 2):
                    raise RuntimeError("a step pre-hook must return None or a tuple of "
                                       f"(new_args, new_kwargs), but got {result!r}")
                args, kwargs = result
        out = update(*args[1:], **kwargs)
        opt._optimizer_step_code()
        for hook in chain(opt._optimizer_step_post_hooks.values(),
                          _global_optimizer_post_hooks.values()):
            hook(opt, args, kwargs)
        return out
