//! Reference values worked by hand from the flax/MLPerf and optax formulas (module docs).

use super::*;
use bigbatch_core::testing::{tensor as t, values as vals};
fn close(a: &[f64], b: &[f64]) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() <= 1e-5, "{a:?} vs {b:?}");
    }
}
fn lars(variant: LarsVariant, nesterov: bool, wd: f64) -> Lars {
    Lars {
        config: LarsConfig {
            variant,
            momentum: 0.9,
            nesterov,
            trust_coefficient: 1.0,
            eps: 0.0,
        },
        weight_decay: wd,
        decay_mode: DecayMode::L2,
        trust_ratio: true,
    }
}
fn ctx(lr: f64) -> StepContext<'static> {
    StepContext::new(lr, 1)
}
fn one_step(o: &Lars, w: &[f32], g: &[f32], lr: f64) -> Vec<f64> {
    let mut s = State::new(vec![t(&vec![0.0; w.len()])]);
    vals(&o.step(&ctx(lr), t(w), t(g), &mut s))
}

/// w = (3, 4), ||w|| = 5; g = (0.8, -0.6), ||g|| = 1 (orthogonal to w); lambda = 0.1, eta = 1,
/// lr = 0.1. d = g + 0.1 w = (1.1, -0.2), ||d|| = sqrt(1.25).
/// mlperf: trust = 5 / (1 + 0.5) = 10/3;  optax: trust = 5 / sqrt(1.25) = 4.4721360.
/// Heavy ball, first step (v = u): w1 = w - 0.1 trust d.
#[test]
fn variants_differ_by_hand() {
    let mlperf = 0.1 * 10.0 / 3.0;
    close(
        &one_step(
            &lars(LarsVariant::Mlperf, false, 0.1),
            &[3.0, 4.0],
            &[0.8, -0.6],
            0.1,
        ),
        &[3.0 - mlperf * 1.1, 4.0 + mlperf * 0.2],
    );
    let optax = 0.1 * 5.0 / 1.25f64.sqrt();
    close(
        &one_step(
            &lars(LarsVariant::Optax, false, 0.1),
            &[3.0, 4.0],
            &[0.8, -0.6],
            0.1,
        ),
        &[3.0 - optax * 1.1, 4.0 + optax * 0.2],
    );
    // Nesterov: w1 = w - (mu u + u) = w - 1.9 u.
    close(
        &one_step(
            &lars(LarsVariant::Mlperf, true, 0.1),
            &[3.0, 4.0],
            &[0.8, -0.6],
            0.1,
        ),
        &[3.0 - 1.9 * mlperf * 1.1, 4.0 + 1.9 * mlperf * 0.2],
    );
}

/// Two steps, lr inside the buffer: w0 = (3, 4), g = (0.6, 0.8) both steps, lambda = 0, eta = 1,
/// lr 0.1 then 0.2. Step 1: trust = 5/1 = 5, u1 = 0.5 g, v1 = u1, w1 = w0 - 0.5 g = (2.7, 3.6).
/// Step 2: ||w1|| = 4.5, trust = 4.5, u2 = 0.2*4.5 g = 0.9 g, v2 = 0.9*0.5 g + 0.9 g = 1.35 g,
/// w2 = w1 - 1.35 g = (1.89, 2.52).
#[test]
fn two_steps_lr_inside_buffer() {
    let o = lars(LarsVariant::Mlperf, false, 0.0);
    let mut s = State::new(vec![t(&[0.0, 0.0])]);
    let w = o.step(&ctx(0.1), t(&[3.0, 4.0]), t(&[0.6, 0.8]), &mut s);
    close(&vals(&w), &[2.7, 3.6]);
    let w = o.step(&ctx(0.2), w, t(&[0.6, 0.8]), &mut s);
    close(&vals(&w), &[1.89, 2.52]);
}

/// Zero-initialised weights: trust 1 in both variants, so w1 = -lr g.
/// All-zero gradient with lambda = 0: nothing moves.
/// Zero gradient on a non-zero weight with lambda = 0.1 (w = (3, 4)), lr = 1:
/// mlperf: ||g|| = 0 -> trust 1, d = 0.1 w -> w1 = 0.9 w = (2.7, 3.6);
/// optax: d = 0.1 w, ||d|| = 0.5 -> trust = 5 / 0.5 = 10 -> w1 = w - 10 * 0.1 w = 0.
#[test]
fn zero_norm_cases() {
    for variant in [LarsVariant::Mlperf, LarsVariant::Optax] {
        close(
            &one_step(&lars(variant, false, 0.0), &[0.0, 0.0], &[1.0, -2.0], 0.5),
            &[-0.5, 1.0],
        );
        close(
            &one_step(&lars(variant, false, 0.0), &[3.0, 4.0], &[0.0, 0.0], 0.5),
            &[3.0, 4.0],
        );
    }
    close(
        &one_step(
            &lars(LarsVariant::Mlperf, false, 0.1),
            &[3.0, 4.0],
            &[0.0, 0.0],
            1.0,
        ),
        &[2.7, 3.6],
    );
    close(
        &one_step(
            &lars(LarsVariant::Optax, false, 0.1),
            &[3.0, 4.0],
            &[0.0, 0.0],
            1.0,
        ),
        &[0.0, 0.0],
    );
}

#[test]
fn trust_ratio_off_is_momentum_with_lr_in_buffer() {
    let mut o = lars(LarsVariant::Mlperf, false, 0.0);
    o.trust_ratio = false;
    close(&one_step(&o, &[3.0, 4.0], &[0.6, 0.8], 0.1), &[2.94, 3.92]);
}

#[test]
fn config_errors_name_fields() {
    let ctx = GroupContext {
        prefix: "optimizer.default".into(),
        weight_decay: 0.0,
        decay_mode: None,
        trust_ratio: None,
    };
    let err = build(&serde_json::json!({"variant": "tf"}), &ctx)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("optimizer.default.optimizer.config.variant"),
        "{err}"
    );
    let err = build(&serde_json::json!({"trust_coefficient": 0.0}), &ctx)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("trust_coefficient"), "{err}");
    assert!(
        build(
            &serde_json::json!({"variant": "optax", "nesterov": true}),
            &ctx
        )
        .is_ok()
    );
}
