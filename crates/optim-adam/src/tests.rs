//! Reference values worked by hand from the Adam, AdamW and BERT formulas (module docs).

use super::*;
use bigbatch_core::testing::{tensor as t, values as vals};
fn close(a: &[f64], b: &[f64], tol: f64) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() <= tol, "{a:?} vs {b:?}");
    }
}
fn group(wd: f64) -> GroupContext {
    GroupContext {
        prefix: "optimizer.default".into(),
        weight_decay: wd,
        decay_mode: None,
        trust_ratio: None,
    }
}
fn ctx(lr: f64, step: u64) -> StepContext<'static> {
    StepContext::new(lr, step)
}
fn run(o: &dyn TensorOptimizer, w0: f32, grads: &[f32], lr: f64) -> f64 {
    let mut s = State::new(vec![t(&[0.0]), t(&[0.0])]);
    let mut w = t(&[w0]);
    for (i, g) in grads.iter().enumerate() {
        w = o.step(&ctx(lr, i as u64 + 1), w, t(&[*g]), &mut s);
    }
    vals(&w)[0]
}

/// Adam, g = 2 then 1, w0 = 1, lr 0.1, eps 1e-8.
/// Step 1: m = 0.2, v = 0.004; m_hat = 2, v_hat = 4 -> r = 2/(2+1e-8) -> w1 = 1 - 0.1 r.
/// Step 2: m = 0.18 + 0.1 = 0.28, v = 0.003996 + 0.001 = 0.004996;
/// m_hat = 0.28/0.19, v_hat = 0.004996/0.001999 -> w2 = w1 - 0.1 m_hat/(sqrt(v_hat)+1e-8).
#[test]
fn adam_two_steps_by_hand() {
    let w1 = 1.0 - 0.1 * 2.0 / (2.0 + 1e-8);
    let m_hat: f64 = 0.28 / 0.19;
    let v_hat: f64 = 0.004996 / (1.0 - 0.999f64 * 0.999);
    let w2 = w1 - 0.1 * m_hat / (v_hat.sqrt() + 1e-8);
    let o = build_adam(&serde_json::json!({}), &group(0.0)).unwrap();
    close(&[run(o.as_ref(), 1.0, &[2.0, 1.0], 0.1)], &[w2], 1e-6);
}

/// BERT: no bias correction. g = 2, w0 = 1, lr 0.1, lambda 0.01, eps 1e-6:
/// m = 0.2, v = 0.004 -> update = 0.2/(sqrt(0.004)+1e-6) + 0.01 -> w1 = 1 - 0.1 update.
/// AdamW with the same numbers: update = 2/(2+1e-8) + 0.01.
#[test]
fn bert_and_adamw_by_hand() {
    let bert = 1.0 - 0.1 * (0.2 / (0.004f64.sqrt() + 1e-6) + 0.01);
    let o = build_bert_adam(&serde_json::json!({}), &group(0.01)).unwrap();
    close(&[run(o.as_ref(), 1.0, &[2.0], 0.1)], &[bert], 1e-6);
    let adamw = 1.0 - 0.1 * (2.0 / (2.0 + 1e-8) + 0.01);
    let o = build_adamw(&serde_json::json!({}), &group(0.01)).unwrap();
    close(&[run(o.as_ref(), 1.0, &[2.0], 0.1)], &[adamw], 1e-6);
}

/// Adam's L2 decay enters the moments: g_eff = 2 + 0.5 * 1 = 2.5 -> r = 2.5/(2.5+1e-8) at step 1,
/// so w1 = 1 - 0.1 * ~1 (the decay is invisible at step 1). Without decay, all-zero gradients leave
/// w unchanged (m = v = 0, so r = 0 / (0 + eps) = 0).
#[test]
fn adam_l2_and_zero_gradient() {
    let o = build_adam(&serde_json::json!({}), &group(0.5)).unwrap();
    close(
        &[run(o.as_ref(), 1.0, &[2.0], 0.1)],
        &[1.0 - 0.1 * 2.5 / (2.5 + 1e-8)],
        1e-6,
    );
    let o = build_adam(&serde_json::json!({}), &group(0.0)).unwrap();
    close(&[run(o.as_ref(), 3.0, &[0.0, 0.0], 0.1)], &[3.0], 0.0);
}

#[test]
fn config_errors_name_fields() {
    let err = build_adam(&serde_json::json!({"eps": -1e-8}), &group(0.0))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("optimizer.default.optimizer.config.eps"),
        "{err}"
    );
    let err = build_adamw(&serde_json::json!({"beta": 0.9}), &group(0.0))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("beta"), "{err}");
}
