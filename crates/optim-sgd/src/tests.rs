//! Reference values worked by hand from the paper's formulas (not from this crate's output).

use super::*;
use bigbatch_core::testing::{tensor as t, values as vals};
fn ctx(lr: f64, step: u64) -> StepContext<'static> {
    StepContext::new(lr, step)
}
fn opt(nesterov: bool, wd: f64, mode: DecayMode) -> Momentum {
    Momentum {
        mu: 0.9,
        nesterov,
        lr_inside_buffer: false,
        weight_decay: wd,
        decay_mode: mode,
        trust_ratio: false,
    }
}
fn assert_close(a: &[f64], b: &[f64]) {
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() < 1e-6, "{a:?} vs {b:?}");
    }
}

/// w0 = 1, g = 1 then 0.5, mu = 0.9, lr = 0.1.
/// Nesterov: v1 = 1; w1 = 1 - 0.1 (0.9 + 1) = 0.81; v2 = 0.9 + 0.5 = 1.4;
/// w2 = 0.81 - 0.1 (1.26 + 0.5) = 0.634.
/// Heavy ball: w1 = 1 - 0.1 = 0.9; w2 = 0.9 - 0.14 = 0.76.
#[test]
fn two_steps_by_hand() {
    for (nesterov, expect) in [(true, [0.81, 0.634]), (false, [0.9, 0.76])] {
        let o = opt(nesterov, 0.0, DecayMode::L2);
        let mut state = State::new(vec![t(&[0.0])]);
        let w1 = o.step(&ctx(0.1, 1), t(&[1.0]), t(&[1.0]), &mut state);
        assert_close(&vals(&w1), &[expect[0]]);
        let w2 = o.step(&ctx(0.1, 2), w1, t(&[0.5]), &mut state);
        assert_close(&vals(&w2), &[expect[1]]);
    }
}

/// L2 decay 0.1 on w = 2, g = 0: effective g = 0.2; heavy ball lr 1: w = 2 - 0.2 = 1.8.
/// Decoupled: momentum sees g = 0 (w unchanged by it), then w - lr*lambda*w = 2 - 0.2 = 1.8 too at
/// step 1, but the buffer stays zero: at step 2, L2 gives v = 0.9*0.2 + 0.18 = 0.36, w = 1.44;
/// decoupled gives w = 1.8 - 0.18 = 1.62.
#[test]
fn decay_modes_differ_in_the_buffer() {
    let l2 = opt(false, 0.1, DecayMode::L2);
    let mut s = State::new(vec![t(&[0.0])]);
    let w = l2.step(&ctx(1.0, 1), t(&[2.0]), t(&[0.0]), &mut s);
    assert_close(&vals(&w), &[1.8]);
    let w = l2.step(&ctx(1.0, 2), w, t(&[0.0]), &mut s);
    assert_close(&vals(&w), &[1.44]);

    let dec = opt(false, 0.1, DecayMode::Decoupled);
    let mut s = State::new(vec![t(&[0.0])]);
    let w = dec.step(&ctx(1.0, 1), t(&[2.0]), t(&[0.0]), &mut s);
    assert_close(&vals(&w), &[1.8]);
    let w = dec.step(&ctx(1.0, 2), w, t(&[0.0]), &mut s);
    assert_close(&vals(&w), &[1.62]);
}

/// lr inside the buffer with a changing lr: v1 = 0.1*1 = 0.1, w1 = 0.9; v2 = 0.09 + 0.2*1 = 0.29,
/// w2 = 0.61. (Outside the buffer: v2 = 1.9, w2 = 0.9 - 0.38 = 0.52.)
#[test]
fn lr_inside_buffer_differs_when_lr_changes() {
    let mut o = opt(false, 0.0, DecayMode::L2);
    o.lr_inside_buffer = true;
    let mut s = State::new(vec![t(&[0.0])]);
    let w = o.step(&ctx(0.1, 1), t(&[1.0]), t(&[1.0]), &mut s);
    let w = o.step(&ctx(0.2, 2), w, t(&[1.0]), &mut s);
    assert_close(&vals(&w), &[0.61]);
    let o = opt(false, 0.0, DecayMode::L2);
    let mut s = State::new(vec![t(&[0.0])]);
    let w = o.step(&ctx(0.1, 1), t(&[1.0]), t(&[1.0]), &mut s);
    let w = o.step(&ctx(0.2, 2), w, t(&[1.0]), &mut s);
    assert_close(&vals(&w), &[0.52]);
}

#[test]
fn registered_and_validated() {
    let names: Vec<_> = bigbatch_core::registry::plugins()
        .iter()
        .map(|p| p.name)
        .collect();
    assert!(
        names.contains(&"nesterov") && names.contains(&"heavy_ball"),
        "{names:?}"
    );
    let ctx = GroupContext {
        prefix: "optimizer.default".into(),
        weight_decay: 0.0,
        decay_mode: None,
        trust_ratio: None,
    };
    let err = build_nesterov(&serde_json::json!({"momentum": 1.5}), &ctx)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("optimizer.default.optimizer.config.momentum"),
        "{err}"
    );
    let err = build_nesterov(&serde_json::json!({"momentun": 0.5}), &ctx)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("momentun"), "{err}");
}
