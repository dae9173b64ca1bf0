#!/usr/bin/env python3
"""Reference trajectories for `bigbatch replay`, computed independently of the Rust code.

Each optimizer below is written out as one plain-Python function of the published formula (cited
per function), in float64, with no dependency beyond the standard library. The script writes

    tests/reference/trace.json               the trace (docs/replay.md format)
    tests/reference/cases/NAME.ron           an optimizer config (run-config `optimizer` section)
    tests/reference/cases/NAME.expected.json what the formula gives: every tensor after every step,
                                             and the trust ratio per tensor where one applies

and `tests/tests/replay.rs` checks `bigbatch replay` against every case in f64 and f32.
Regenerate with: python3 tests/reference/reference_optimizers.py

The trace covers the cases where optimizers are known to disagree: a zero-initialised bias and a
zero-initialised weight matrix (||w|| = 0 at step 1), an all-zero gradient step (step 2), and a zero
gradient on a non-zero weight (step 3, `dense.weight`), with a learning rate that changes every
step (so learning-rate-inside-the-buffer forms differ from the default).
"""

import json
import math
import os

HERE = os.path.dirname(os.path.abspath(__file__))

PARAMS = [
    ("dense.weight", "Weight", [2, 3], [0.5, -1.0, 0.25, 2.0, -0.75, 1.5]),
    ("dense.bias", "Bias", [3], [0.0, 0.0, 0.0]),
    ("bn.gamma", "Norm", [3], [1.0, 0.8, 1.2]),
    ("head.weight", "Weight", [2, 2], [0.0, 0.0, 0.0, 0.0]),
]

STEPS = [
    (0.1, {"dense.weight": [0.3, -0.2, 0.1, 0.5, 0.05, -0.4], "dense.bias": [0.1, -0.3, 0.2],
           "bn.gamma": [0.02, -0.01, 0.03], "head.weight": [0.5, -0.25, 0.125, 1.0]}),
    (0.2, {"dense.weight": [0.0] * 6, "dense.bias": [0.0] * 3, "bn.gamma": [0.0] * 3,
           "head.weight": [0.0] * 4}),
    (0.3, {"dense.weight": [0.0] * 6, "dense.bias": [-0.2, 0.4, 0.05],
           "bn.gamma": [0.1, 0.0, -0.05], "head.weight": [-0.3, 0.6, 0.2, -0.1]}),
    (0.15, {"dense.weight": [-0.6, 0.4, 0.9, -0.1, 0.3, 0.2], "dense.bias": [0.5, 0.1, -0.1],
            "bn.gamma": [-0.04, 0.06, 0.01], "head.weight": [0.05, 0.05, -0.5, 0.25]}),
    (0.05, {"dense.weight": [1.5, -2.0, 0.5, 0.25, -1.0, 3.0], "dense.bias": [-0.1, 0.2, 0.3],
            "bn.gamma": [0.2, -0.3, 0.1], "head.weight": [1.0, -1.0, 0.5, 2.0]}),
]


def norm(x):
    return math.sqrt(sum(v * v for v in x))


def guarded(num, den, valid):
    """num / den where `valid`, else 1 (every trust ratio's zero-norm guard)."""
    return num / den if valid else 1.0


class Momentum:
    """Nado et al. (2021) section 2.1.1, no dampening: v <- mu v + g; heavy ball w <- w - lr v,
    Nesterov w <- w - lr (mu v + g). lr_inside: Sutskever et al. (2013) / tf.keras:
    v <- mu v + lr g, w <- w - v (Nesterov w - (mu v + lr g)). L2 adds wd w to g; decoupled
    subtracts lr wd w (of the pre-update w). trust: optax.lars-style ||w|| / ||g + wd w|| applied
    to the gradient before the trace."""

    def __init__(self, mu, nesterov, lr_inside=False, wd=0.0, mode="L2", trust=False):
        self.mu, self.nesterov, self.lr_inside = mu, nesterov, lr_inside
        self.wd, self.mode, self.trust = wd, mode, trust
        self.v = None

    def step(self, w, g, lr, t, global_norm):
        if self.v is None:
            self.v = [0.0] * len(w)
        d = [gi + self.wd * wi for gi, wi in zip(g, w)] if self.mode == "L2" else list(g)
        ratio = None
        if self.trust:
            wn, dn = norm(w), norm(d)
            ratio = guarded(wn, dn, wn > 0 and dn > 0)
            d = [ratio * x for x in d]
        mu = self.mu
        if self.lr_inside:
            self.v = [mu * vi + lr * di for vi, di in zip(self.v, d)]
            upd = [mu * vi + lr * di for vi, di in zip(self.v, d)] if self.nesterov else self.v
            new = [wi - ui for wi, ui in zip(w, upd)]
        else:
            self.v = [mu * vi + di for vi, di in zip(self.v, d)]
            upd = [mu * vi + di for vi, di in zip(self.v, d)] if self.nesterov else self.v
            new = [wi - lr * ui for wi, ui in zip(w, upd)]
        if self.mode == "Decoupled":
            new = [ni - lr * self.wd * wi for ni, wi in zip(new, w)]
        return new, ratio


class AdamFamily:
    """Kingma & Ba (2015) / optax.scale_by_adam: m <- b1 m + (1-b1) g, v <- b2 v + (1-b2) g^2,
    r = m_hat / (sqrt(v_hat + eps_root) + eps) with m_hat = m / (1 - b1^t), v_hat = v / (1 - b2^t)
    (or m, v without bias correction: BERT's AdamWeightDecayOptimizer).
    mode L2: g <- g + wd w first (torch Adam weight_decay); Decoupled: r <- r + wd w (optax.adamw,
    BERT). max_grad_norm: g <- g max / max(global_norm, max) (tf.clip_by_global_norm).
    trust (optax.lamb's scale_by_trust_ratio): r <- r ||w|| / ||r||, 1 if either norm is 0;
    trust_clip: min(ratio, 1). Finally w <- w - lr r."""

    def __init__(self, b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0, bc=True, wd=0.0,
                 mode="L2", trust=False, trust_clip=False, max_grad_norm=None):
        self.b1, self.b2, self.eps, self.eps_root, self.bc = b1, b2, eps, eps_root, bc
        self.wd, self.mode, self.trust, self.trust_clip = wd, mode, trust, trust_clip
        self.max_grad_norm = max_grad_norm
        self.m = self.v = None

    def step(self, w, g, lr, t, global_norm):
        n = len(w)
        if self.m is None:
            self.m, self.v = [0.0] * n, [0.0] * n
        if self.max_grad_norm is not None:
            scale = self.max_grad_norm / max(global_norm, self.max_grad_norm)
            g = [gi * scale for gi in g]
        if self.mode == "L2":
            g = [gi + self.wd * wi for gi, wi in zip(g, w)]
        self.m = [self.b1 * mi + (1 - self.b1) * gi for mi, gi in zip(self.m, g)]
        self.v = [self.b2 * vi + (1 - self.b2) * gi * gi for vi, gi in zip(self.v, g)]
        c1 = 1 - self.b1 ** t if self.bc else 1.0
        c2 = 1 - self.b2 ** t if self.bc else 1.0
        r = [(mi / c1) / (math.sqrt(vi / c2 + self.eps_root) + self.eps)
             for mi, vi in zip(self.m, self.v)]
        if self.mode == "Decoupled":
            r = [ri + self.wd * wi for ri, wi in zip(r, w)]
        ratio = None
        if self.trust:
            wn, rn = norm(w), norm(r)
            ratio = guarded(wn, rn, wn > 0 and rn > 0)
            if self.trust_clip:
                ratio = min(ratio, 1.0)
            r = [ratio * ri for ri in r]
        return [wi - lr * ri for wi, ri in zip(w, r)], ratio


class LarsMlperf:
    """flax.optim.LARS as used by the MLPerf ResNet reference (and TF's LARSOptimizer):
    trust = eta ||w|| / (||g|| + wd ||w|| + eps) where ||w|| > 0 and ||g|| > 0, else 1;
    scaled_lr = lr trust; v <- mu v + scaled_lr (g + wd w); w <- w - v
    (Nesterov: w <- w - (mu v + scaled_lr (g + wd w)))."""

    def __init__(self, mu=0.9, nesterov=False, eta=0.001, eps=0.0, wd=0.0):
        self.mu, self.nesterov, self.eta, self.eps, self.wd = mu, nesterov, eta, eps, wd
        self.v = None

    def step(self, w, g, lr, t, global_norm):
        if self.v is None:
            self.v = [0.0] * len(w)
        wn, gn = norm(w), norm(g)
        ratio = guarded(self.eta * wn, gn + self.wd * wn + self.eps, wn > 0 and gn > 0)
        u = [lr * ratio * (gi + self.wd * wi) for gi, wi in zip(g, w)]
        self.v = [self.mu * vi + ui for vi, ui in zip(self.v, u)]
        upd = [self.mu * vi + ui for vi, ui in zip(self.v, u)] if self.nesterov else self.v
        return [wi - ui for wi, ui in zip(w, upd)], ratio


class LarsOptax:
    """optax.lars = add_decayed_weights(wd) -> scale_by_trust_ratio(trust_coefficient, eps)
    -> scale_by_learning_rate(lr) -> trace(momentum, nesterov):
    d = g + wd w; trust = c ||w|| / (||d|| + eps), 1 if ||w|| = 0 or ||d|| = 0;
    v <- mu v + lr trust d; w <- w - v (Nesterov: w - (mu v + lr trust d)).
    trust=False: the optax mask that leaves a parameter out of the trust ratio."""

    def __init__(self, mu=0.9, nesterov=False, c=0.001, eps=0.0, wd=0.0, trust=True):
        self.mu, self.nesterov, self.c, self.eps, self.wd = mu, nesterov, c, eps, wd
        self.trust = trust
        self.v = None

    def step(self, w, g, lr, t, global_norm):
        if self.v is None:
            self.v = [0.0] * len(w)
        d = [gi + self.wd * wi for gi, wi in zip(g, w)]
        ratio = None
        scale = 1.0
        if self.trust:
            wn, dn = norm(w), norm(d)
            ratio = guarded(self.c * wn, dn + self.eps, wn > 0 and dn > 0)
            scale = ratio
        u = [lr * scale * di for di in d]
        self.v = [self.mu * vi + ui for vi, ui in zip(self.v, u)]
        upd = [self.mu * vi + ui for vi, ui in zip(self.v, u)] if self.nesterov else self.v
        return [wi - ui for wi, ui in zip(w, upd)], ratio


NO_DECAY = "(select: (kinds: [Bias, Norm]), optimizer: %s, weight_decay: 0.0%s)"


def ron(default, default_extra, group_opt=None, group_extra=""):
    """An optimizer section: default group and, optionally, a `no_decay` group for biases and
    normalisation parameters. A group inherits every setting it does not name from the default
    (lr_scale, decay_mode, trust_ratio), so the cases name what differs."""
    groups = ""
    if group_opt is not None:
        groups = '"no_decay": ' + NO_DECAY % (group_opt, group_extra)
    return ("(\n    optimizer: (\n        default: (optimizer: %s%s),\n        groups: {%s},\n"
            "    ),\n)\n" % (default, default_extra, groups))


def weights_and_rest(default, rest=None, rest_scale=1.0):
    """Group factory: `default` for Weight params, `rest` for Bias/Norm (the no_decay group);
    without `rest` every parameter is in the default group."""
    def make(kind):
        if kind == "Weight" or rest is None:
            return (default(), 1.0, "default")
        return (rest(), rest_scale, "no_decay")
    return make


CASES = {
    "heavy_ball": (
        ron('(name: "heavy_ball", config: (momentum: 0.9))', ", weight_decay: 0.01",
            '(name: "heavy_ball", config: (momentum: 0.9))'),
        weights_and_rest(lambda: Momentum(0.9, False, wd=0.01), lambda: Momentum(0.9, False))),
    "nesterov": (
        ron('(name: "nesterov", config: (momentum: 0.9))', ", weight_decay: 0.01",
            '(name: "nesterov", config: (momentum: 0.9))'),
        weights_and_rest(lambda: Momentum(0.9, True, wd=0.01), lambda: Momentum(0.9, True))),
    "nesterov_lr_inside_buffer": (
        ron('(name: "nesterov", config: (momentum: 0.8, lr_inside_buffer: true))',
            ", weight_decay: 0.01",
            '(name: "heavy_ball", config: (momentum: 0.8, lr_inside_buffer: true))'),
        weights_and_rest(lambda: Momentum(0.8, True, lr_inside=True, wd=0.01),
                         lambda: Momentum(0.8, False, lr_inside=True))),
    "nesterov_decoupled": (
        ron('(name: "nesterov", config: (momentum: 0.9))',
            ", weight_decay: 0.05, decay_mode: Decoupled"),
        weights_and_rest(lambda: Momentum(0.9, True, wd=0.05, mode="Decoupled"))),
    "trust_ratio_nesterov": (
        ron('(name: "nesterov", config: (momentum: 0.9))',
            ", weight_decay: 0.01, trust_ratio: true",
            '(name: "nesterov", config: (momentum: 0.9))', ", trust_ratio: false"),
        weights_and_rest(lambda: Momentum(0.9, True, wd=0.01, trust=True),
                         lambda: Momentum(0.9, True))),
    "adam": (
        ron('(name: "adam", config: (eps: 1e-8))', ", weight_decay: 0.01",
            '(name: "adam", config: (eps: 1e-8))'),
        weights_and_rest(lambda: AdamFamily(eps=1e-8, wd=0.01), lambda: AdamFamily(eps=1e-8))),
    "adam_no_bias_correction_eps_1e-6": (
        ron('(name: "adam", config: (bias_correction: false, eps: 1e-6, beta2: 0.99))', ""),
        weights_and_rest(lambda: AdamFamily(b2=0.99, eps=1e-6, bc=False))),
    "adam_eps_1e-11_eps_root": (
        ron('(name: "adam", config: (eps: 1e-11, eps_root: 1e-8))', ""),
        weights_and_rest(lambda: AdamFamily(eps=1e-11, eps_root=1e-8))),
    "adamw": (
        ron('(name: "adamw", config: ())', ", weight_decay: 0.1",
            '(name: "adamw", config: ())'),
        weights_and_rest(lambda: AdamFamily(wd=0.1, mode="Decoupled"),
                         lambda: AdamFamily(mode="Decoupled"))),
    "bert_adam": (
        ron('(name: "bert_adam", config: (max_grad_norm: 1.0))', ", weight_decay: 0.01",
            '(name: "bert_adam", config: (max_grad_norm: 1.0))'),
        weights_and_rest(
            lambda: AdamFamily(eps=1e-6, bc=False, wd=0.01, mode="Decoupled", max_grad_norm=1.0),
            lambda: AdamFamily(eps=1e-6, bc=False, mode="Decoupled", max_grad_norm=1.0))),
    "lars_mlperf": (
        ron('(name: "lars", config: (variant: "mlperf", momentum: 0.9, trust_coefficient: 0.001))',
            ", weight_decay: 0.0001",
            '(name: "heavy_ball", config: (momentum: 0.9, lr_inside_buffer: true))'),
        weights_and_rest(lambda: LarsMlperf(0.9, False, 0.001, 0.0, 1e-4),
                         lambda: Momentum(0.9, False, lr_inside=True))),
    "lars_mlperf_nesterov": (
        ron('(name: "lars", config: (variant: "mlperf", nesterov: true, trust_coefficient: 0.02, '
            'eps: 1e-9))', ", weight_decay: 0.01",
            '(name: "nesterov", config: (lr_inside_buffer: true))'),
        weights_and_rest(lambda: LarsMlperf(0.9, True, 0.02, 1e-9, 0.01),
                         lambda: Momentum(0.9, True, lr_inside=True))),
    "lars_optax": (
        ron('(name: "lars", config: (variant: "optax", trust_coefficient: 0.02, eps: 1e-8))',
            ", weight_decay: 0.01",
            '(name: "lars", config: (variant: "optax"))', ", trust_ratio: false"),
        weights_and_rest(lambda: LarsOptax(0.9, False, 0.02, 1e-8, 0.01),
                         lambda: LarsOptax(0.9, False, trust=False))),
    "lamb": (
        ron('(name: "lamb", config: ())', ", weight_decay: 0.01",
            '(name: "lamb", config: ())', ", trust_ratio: false"),
        weights_and_rest(lambda: AdamFamily(eps=1e-6, wd=0.01, mode="Decoupled", trust=True),
                         lambda: AdamFamily(eps=1e-6, mode="Decoupled"))),
    "lamb_bert_style": (
        ron('(name: "lamb", config: (bias_correction: false, trust_clip: true, max_grad_norm: 1.0))',
            ", weight_decay: 0.01",
            '(name: "lamb", config: (bias_correction: false, max_grad_norm: 1.0))',
            ", trust_ratio: false, lr_scale: 2.0"),
        weights_and_rest(
            lambda: AdamFamily(eps=1e-6, bc=False, wd=0.01, mode="Decoupled", trust=True,
                               trust_clip=True, max_grad_norm=1.0),
            lambda: AdamFamily(eps=1e-6, bc=False, mode="Decoupled", max_grad_norm=1.0),
            rest_scale=2.0)),
    "lamb_l2": (
        ron('(name: "lamb", config: (beta1: 0.8, beta2: 0.99))',
            ", weight_decay: 0.01, decay_mode: L2"),
        weights_and_rest(
            lambda: AdamFamily(b1=0.8, b2=0.99, eps=1e-6, wd=0.01, mode="L2", trust=True))),
}


def run(make):
    params = {name: list(values) for name, _, _, values in PARAMS}
    optimizers = {name: make(kind) for name, kind, _, _ in PARAMS}
    out = {"groups": {name: optimizers[name][2] for name in params}, "steps": []}
    for t, (lr, grads) in enumerate(STEPS, start=1):
        global_norm = math.sqrt(sum(v * v for g in grads.values() for v in g))
        ratios = {}
        for name in params:
            opt, scale, _ = optimizers[name]
            params[name], ratio = opt.step(params[name], grads[name], lr * scale, t, global_norm)
            if ratio is not None:
                ratios[name] = ratio
        out["steps"].append({"step": t, "lr": lr, "params": {k: list(v) for k, v in params.items()},
                             "trust_ratios": ratios})
    return out


def main():
    trace = {
        "params": [{"name": n, "kind": k, "shape": s, "values": v} for n, k, s, v in PARAMS],
        "steps": [{"lr": lr, "grads": grads} for lr, grads in STEPS],
    }
    with open(os.path.join(HERE, "trace.json"), "w") as f:
        json.dump(trace, f, indent=1)
        f.write("\n")
    cases = os.path.join(HERE, "cases")
    os.makedirs(cases, exist_ok=True)
    for name, (ron_text, make) in CASES.items():
        with open(os.path.join(cases, name + ".ron"), "w") as f:
            f.write("// Generated by tests/reference/reference_optimizers.py\n" + ron_text)
        with open(os.path.join(cases, name + ".expected.json"), "w") as f:
            json.dump(run(make), f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
