//! Reference values worked by hand from the optax.lamb formula (not from this crate's output).

use super::*;
use bigbatch_core::testing::{tensor as t, values as vals};
fn lamb(wd: f64, trust: bool) -> Lamb {
    Lamb {
        config: LambConfig {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-6,
            eps_root: 0.0,
            bias_correction: true,
            trust_clip: false,
            max_grad_norm: None,
        },
        weight_decay: wd,
        decay_mode: DecayMode::Decoupled,
        trust_ratio: trust,
    }
}
fn ctx(lr: f64, step: u64) -> StepContext<'static> {
    StepContext::new(lr, step)
}
fn close(a: &[f64], b: &[f64], tol: f64) {
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() <= tol, "{a:?} vs {b:?}");
    }
}

/// Step 1 with bias correction: m_hat = g, v_hat = g^2, so r = g / (|g| + eps) ~ sign(g).
/// w = (3, 4), g = (1, -2): r = (1/(1+1e-6), -2/(2+1e-6)); lambda = 0.
/// ||w|| = 5, ||r|| = sqrt(r1^2 + r2^2); w' = w - lr * 5/||r|| * r.
#[test]
fn first_step_by_hand() {
    let r1: f64 = 1.0 / (1.0 + 1e-6);
    let r2: f64 = -2.0 / (2.0 + 1e-6);
    let norm = (r1 * r1 + r2 * r2).sqrt();
    let trust = 5.0 / norm;
    let o = lamb(0.0, true);
    let mut s = State::new(vec![t(&[0.0, 0.0]), t(&[0.0, 0.0])]);
    let w = o.step(&ctx(0.01, 1), t(&[3.0, 4.0]), t(&[1.0, -2.0]), &mut s);
    close(
        &vals(&w),
        &[3.0 - 0.01 * trust * r1, 4.0 - 0.01 * trust * r2],
        1e-5,
    );
    // Moments: m = 0.1 g, v = 0.001 g^2.
    close(&vals(s.get(0)), &[0.1, -0.2], 1e-7);
    close(&vals(s.get(1)), &[0.001, 0.004], 1e-8);
}

/// Two steps with decay, g constant = (1, 1), w0 = (1, 1), lambda = 0.1, lr = 0.1, no trust ratio.
/// Step t: m_hat = 1, v_hat = 1 exactly (constant gradient), r = 1/(1+1e-6).
/// w1 = 1 - 0.1 (r + 0.1) ; w2 = w1 - 0.1 (r + 0.1 w1).
#[test]
fn decay_and_no_trust_two_steps() {
    let r = 1.0 / (1.0 + 1e-6);
    let w1 = 1.0 - 0.1 * (r + 0.1);
    let w2 = w1 - 0.1 * (r + 0.1 * w1);
    let o = lamb(0.1, false);
    let mut s = State::new(vec![t(&[0.0, 0.0]), t(&[0.0, 0.0])]);
    let w = o.step(&ctx(0.1, 1), t(&[1.0, 1.0]), t(&[1.0, 1.0]), &mut s);
    close(&vals(&w), &[w1, w1], 1e-6);
    let w = o.step(&ctx(0.1, 2), w, t(&[1.0, 1.0]), &mut s);
    close(&vals(&w), &[w2, w2], 1e-6);
}

/// Zero-initialised weights: ||w|| = 0 -> trust 1, so w' = -lr r. An all-zero gradient on a
/// non-zero weight with lambda = 0: u = 0 -> trust 1 and w unchanged.
#[test]
fn zero_norm_cases() {
    let o = lamb(0.0, true);
    let mut s = State::new(vec![t(&[0.0]), t(&[0.0])]);
    let w = o.step(&ctx(0.5, 1), t(&[0.0]), t(&[2.0]), &mut s);
    close(&vals(&w), &[-0.5 * 2.0 / (2.0 + 1e-6)], 1e-6);
    let mut s = State::new(vec![t(&[0.0]), t(&[0.0])]);
    let w = o.step(&ctx(0.5, 1), t(&[7.0]), t(&[0.0]), &mut s);
    close(&vals(&w), &[7.0], 0.0);
}

#[test]
fn registered_and_validated() {
    let names: Vec<_> = bigbatch_core::registry::plugins()
        .iter()
        .map(|p| p.name)
        .collect();
    assert!(names.contains(&"lamb"), "{names:?}");
    let ctx = GroupContext {
        prefix: "optimizer.default".into(),
        weight_decay: 0.0,
        decay_mode: None,
        trust_ratio: None,
    };
    let err = build(&serde_json::json!({"eps": -1.0}), &ctx)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("optimizer.default.optimizer.config.eps"),
        "{err}"
    );
}
